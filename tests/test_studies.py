"""The study mechanism: studies as folders (params overlay, layout), task references, seen languages, declared
contrasts and interactions, shared identical runs."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from xstilts.config import TaskRef, as_ref, load_params
from xstilts.errors import ConfigError, XstiltsError
from xstilts.stats.analysis import analyse_study
from xstilts.study import Layout, arm_refs, copy_run, find_finished, layout, seen_languages

from conftest import REPO, params_with_study, write_synthetic_run


# ---------------------------------------------------------------- task references

def test_a_bare_name_is_a_plain_reference_and_keeps_its_fingerprint(smoke_env, tmp_path):
    """Runs trained before task references existed keep their fingerprints (no study re-trains them)."""
    from xstilts.training.runner import fingerprint

    params, base = smoke_env
    ref = as_ref("sick")
    assert ref.plain and ref.key() == "sick" and ref.label() == "sick"
    cfg = params.active.training.resolve("intermediate", ["sick"])
    h = hashlib.sha256()  # the fingerprint as computed before references existed
    h.update(json.dumps({"tasks": ["sick"], "phase": "intermediate", "seed": 1, "cfg": cfg.model_dump(),
                         "profile": params.profile}, sort_keys=True).encode())
    for f in ("config.json", "model.safetensors"):
        p = base / f
        size = p.stat().st_size
        with open(p, "rb") as fh:
            h.update(f"{f}:{size}".encode() + fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read())
    h.update((Path(params.data.prepared_dir) / "sick" / "meta.json").read_bytes())
    assert fingerprint(["sick"], "intermediate", base, 1, cfg, params) == h.hexdigest()[:16]
    drawn = TaskRef(task="sick", k=5, draw_seed=2)
    assert fingerprint([drawn], "intermediate", base, 1, cfg, params) != h.hexdigest()[:16]
    assert drawn.label() == "sick[train:k=5@2]"


def test_references_draw_k_examples_per_language_reproducibly(smoke_env):
    from xstilts.data.prepare import load_split, reference_records

    params, _ = smoke_env
    prep = params.data.prepared_dir
    ref = TaskRef(task="xnli", split="inlang", languages=["de", "zh"], k=5, draw_seed=1)
    a, b = reference_records(ref, prep), reference_records(ref, prep)
    assert len(a) == 10 and a == b  # 5 per language, the same draw every time
    other = reference_records(TaskRef(task="xnli", split="inlang", languages=["de"], k=5, draw_seed=2), prep)
    assert [r["id"] for r in other] != [r["id"] for r in a[:5]]
    de = {r["id"] for r in load_split(prep, "xnli", "inlang", "de")}
    assert {r["id"] for r in a[:5]} <= de
    assert len(reference_records(TaskRef(task="sick"), prep)) == len(load_split(prep, "sick", "train", "en"))
    with pytest.raises(XstiltsError, match="no prepared 'inlang' split"):
        reference_records(TaskRef(task="sick", split="inlang"), prep)
    with pytest.raises(XstiltsError, match=r"no prepared language\(s\) \['xx'\]"):
        reference_records(TaskRef(task="xnli", split="inlang", languages=["xx"]), prep)


def test_an_arm_of_references_trains_and_records_its_realised_sizes(smoke_env, tmp_path):
    from xstilts.training.runner import run_phase

    params, base = smoke_env
    refs = [TaskRef(task="sick", k=6, draw_seed=0), TaskRef(task="xnli", split="inlang", languages=["de"], k=4)]
    m = run_phase(refs, "intermediate", base, tmp_path / "run", 1, params, progress=False)
    assert m["train_examples"] == {"sick": 6, "xnli": 4}
    assert m["tasks"] == [refs[0].key(), refs[1].key()]


def test_a_size_match_draws_the_other_arms_number_of_examples(smoke_env):
    params, _ = smoke_env
    p = params.model_copy(update={"study": params_with_study(
        arms={"none": [], "one": ["ud_ewt_upos"], "three": ["sick", "siqa", "tydiqa"]},
        intermediate_arms=["one", "three"], match={"three": "one"}).study})
    n = len(__import__("xstilts.data.prepare", fromlist=["x"]).load_split(p.data.prepared_dir, "ud_ewt_upos", "train", "en"))
    assert [r.k for r in arm_refs(p, "three")] == [n // 3] * 3 and arm_refs(p, "one")[0].k is None


# ---------------------------------------------------------------- studies as folders

def test_a_study_lays_its_params_over_the_root_and_gets_its_own_layout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    folder = tmp_path / "pipelines" / "tiny"
    folder.mkdir(parents=True)
    folder.joinpath("params.yaml").write_text(yaml.safe_dump({
        "study": {"question": "Q?", "seeds": [1, 2, 3], "arms": {"none": [], "nli": ["sick"]},
                  "intermediate_arms": ["nli"], "targets": ["xnli"], "retrieval": []},
        "profiles": {"mini": {"caps": {"train": 50}}}}))
    p = load_params("params.yaml", study="tiny")
    assert p.study_name == "tiny" and p.tracking.experiment == "tiny" and p.study.question == "Q?"
    assert p.profiles["mini"].caps.train == 50 and p.profiles["mini"].caps.dev == 48  # merged, not replaced
    root = load_params("params.yaml")
    assert root.study_name is None and list(root.study.arms) != ["none", "nli"]
    L, R = layout(p), layout(root)
    assert L.run_dir("xnli", "nli", 1) == Path("results/tiny/runs/xnli/nli/seed1")
    assert L.intermediate_dir("nli", 2) == Path("models/tiny/intermediate/nli/seed2")
    assert L.stats_dir == Path("results/tiny/stats") and L.report_dir == Path("reports/tiny")
    assert R.run_dir("xnli", "nli", 1) == Path("results/runs/xnli/nli/seed1")  # the root study is unchanged
    assert R.stats_dir == Path("results/stats/default-study") and R.encoder_for("none", 1) == Path("models/base")
    assert L.hpo_file("target", "xnli") == Path("results/hpo/target/xnli.yaml")  # shared target tuning
    assert L.hpo_file("intermediate", "nli") == Path("results/tiny/hpo/intermediate/nli.yaml")
    with pytest.raises(ConfigError, match="study 'nope'.*studies here: tiny"):
        load_params("params.yaml", study="nope")
    folder.joinpath("params.yaml").write_text(yaml.safe_dump({"study": {"arms": {"none": []}, "targets": ["xnli"],
                                                                          "intermediate_arms": [], "families":
                                                                          {"f": ["ghost"]}}}))
    with pytest.raises(ConfigError, match="study.families.f: unknown arm"):
        load_params("params.yaml", study="tiny")


def test_identical_runs_are_found_and_shared(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "results/runs/xnli/none/seed1"
    src.mkdir(parents=True)
    (src / "metrics.json").write_text(json.dumps({"train": {"fingerprint": "abc"}, "eval_code": "e"}))
    (src / "predictions").mkdir()
    (src / "predictions" / "de.jsonl").write_text("{}\n")
    hit = find_finished("results/**/runs/xnli/*/seed1", lambda m: m["train"]["fingerprint"] == "abc")
    assert hit == Path("results/runs/xnli/none/seed1")
    assert find_finished("results/**/runs/xnli/*/seed1", lambda m: m["train"]["fingerprint"] == "zzz") is None
    dst = tmp_path / "results/study2/runs/xnli/none/seed1"
    copy_run(hit, dst)
    assert (dst / "predictions" / "de.jsonl").read_text() == "{}\n"
    assert (dst / "metrics.json").stat().st_ino == (src / "metrics.json").stat().st_ino  # linked, not copied


# ---------------------------------------------------------------- seen languages and contrasts

LANGS = [f"l{i}" for i in range(8)]


def test_languages_an_arm_trained_on_are_reported_apart(tmp_path):
    """An arm with in-language data for l0 gains there only: the zero-shot claim leaves l0 out, `seen` has it."""
    params = params_with_study(targets=["xnli"], retrieval=[], seeds=[1, 2, 3, 4, 5],
                               arms={"none": [], "inl": [TaskRef(task="xnli", split="inlang", languages=["l0"])]},
                               intermediate_arms=["inl"])
    assert seen_languages(params, "inl") == ["l0"] and seen_languages(params, "none") == []
    rng = np.random.default_rng(0)
    base = {l: 0.5 for l in LANGS}
    for s in params.study.seeds:
        write_synthetic_run(tmp_path, "xnli", "none", s, base, rng, run_sd=0.01)
        write_synthetic_run(tmp_path, "xnli", "inl", s, {**base, "l0": 0.95}, rng, run_sd=0.01)
    r = analyse_study(params, tmp_path, tmp_path / "out", n_resamples=200, metrics_file=tmp_path / "m.json")
    arm = r["targets"]["xnli"]["arms"]["inl"]
    assert "l0" not in arm["zero_shot_languages"] and arm["claim"]["n_languages"] == 7
    assert abs(arm["claim"]["delta"]) < 5 and arm["seen"]["languages"] == ["l0"] and arm["seen"]["delta"] > 30


@pytest.fixture(scope="module")
def contrast_study(tmp_path_factory):
    """Syntactic arms gain 12 points on udpos and nothing on panx; semantic arms the reverse (6 points on panx).
    syn1 is declared a same-data control for udpos."""
    root = tmp_path_factory.mktemp("runs")
    params = params_with_study(
        targets=["udpos", "panx"], retrieval=[], seeds=[1, 2, 3, 4, 5],
        arms={"none": [], "syn1": ["ud_ewt_upos"], "syn2": ["ud_ewt_xpos"], "sem1": ["sick"], "sem2": ["siqa"]},
        intermediate_arms=["syn1", "syn2", "sem1", "sem2"],
        families={"syntactic": ["syn1", "syn2"], "semantic": ["sem1", "sem2"]},
        contrasts=[{"a": "syntactic", "b": "semantic"}, {"a": "syntactic", "b": "none"}],
        interactions=[{"a": "syntactic", "b": "semantic", "targets": ["udpos", "panx"]}],
        controls={"udpos": ["syn1"]})
    rng = np.random.default_rng(4)
    base = {l: 0.5 + 0.02 * i for i, l in enumerate(LANGS)}
    gain = {("udpos", "syn1"): 0.3, ("udpos", "syn2"): 0.12, ("panx", "sem1"): 0.06, ("panx", "sem2"): 0.06}
    for s in params.study.seeds:
        for t in ("udpos", "panx"):
            for arm in params.study.arms:
                g = gain.get((t, arm), 0.0)
                write_synthetic_run(root, t, arm, s, {l: a + g for l, a in base.items()}, rng, n=400, run_sd=0.01)
    out = tmp_path_factory.mktemp("stats")
    overlap = out / "ov.json"
    overlap.write_text(json.dumps({"controls": {"udpos": {"syn1": {"label": "same-data control", "why": "declared"}}}}))
    return analyse_study(params, root, out, n_resamples=200, metrics_file=out / "m.json", overlap_file=overlap)


def test_family_contrasts_leave_same_data_controls_out(contrast_study):
    by = {(c["contrast"], c["target"]): c for c in contrast_study["contrasts"]}
    udpos = by[("syntactic vs semantic", "udpos")]
    assert udpos["a"] == ["syn2"] and udpos["controls_left_out"] == ["syn1"]  # syn1's +30 is not pooled
    assert 9 < udpos["delta"] < 15 and udpos["significant"] and udpos["n_seeds"] == 5
    panx = by[("syntactic vs semantic", "panx")]
    assert panx["a"] == ["syn1", "syn2"] and -8 < panx["delta"] < -4
    assert {c["adjustment"] for c in contrast_study["contrasts"]} == {"holm over the study's 5 declared contrasts"}


def test_the_interaction_is_the_contrast_difference_between_targets(contrast_study):
    (inter,) = [c for c in contrast_study["contrasts"] if c["kind"] == "interaction"]
    d = inter["per_target"]
    assert inter["delta"] == pytest.approx(d["udpos"] - d["panx"]) and 14 < inter["delta"] < 21
    assert inter["significant"] and inter["n_seeds"] == 5 and inter["controls_left_out"] == ["syn1"]
    per_seed = inter["per_seed"]
    assert len(per_seed) == 5 and inter["p"] < 0.01
