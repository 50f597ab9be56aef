"""`stats.analysis` on a study's run folders: a planted gain is found, a null arm is not, files are tidy."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from xstilts.stats.analysis import analyse_study

from conftest import params_with_study as _with_study, write_synthetic_run as _write_run

LANGS = [f"l{i}" for i in range(10)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    params = _with_study(targets=["xnli"], retrieval=[], arms={"none": [], "good": ["sick"], "same": ["siqa"]},
                         seeds=[1, 2, 3])
    rng = np.random.default_rng(1)  # fixed draw; a null arm still rejects in ~5 % of draws by design
    base = {l: 0.5 + 0.02 * i for i, l in enumerate(LANGS)}
    for s in params.study.seeds:
        _write_run(root, "xnli", "none", s, base, rng)
        _write_run(root, "xnli", "good", s, {l: a + 0.12 for l, a in base.items()}, rng)
        _write_run(root, "xnli", "same", s, base, rng)
    out = tmp_path_factory.mktemp("stats")
    return analyse_study(params, root, out, n_resamples=500, metrics_file=out / "stats.json"), params, root


def test_a_planted_gain_is_significant_and_a_null_arm_is_not(study):
    r, _, _ = study
    claims = {c["arm"]: c for c in r["claims"]}
    assert set(claims) == {"good", "same"}
    good, same = claims["good"], claims["same"]
    assert 8 < good["delta"] < 16 and good["ci_low"] > 0 and good["p_adjusted"] < 0.05
    assert good["n_languages"] == 10 and good["n_seeds"] == 3
    assert good["adjustment"] == "holm over xnli's 2 arms" and good["significant"] and not same["significant"]
    assert same["ci_low"] < 0 < same["ci_high"] and same["p_adjusted"] > 0.05
    assert good["replicability"] >= 5 and good["aso_epsilon_min"] < 0.2
    t = r["targets"]["xnli"]
    assert t["mixed_model"]["converged"] and t["mixed_model"]["effects"]["good"]["p"] < 0.001
    assert t["arms"]["good"]["per_language"]["l0"]["n_examples"] == 120


def test_stats_files_are_tidy(study):
    r, _, _ = study
    out = Path(r["out_dir"])
    assert json.loads((out / "xnli.json").read_text())["arms"]["good"]["across"]["adjustment"].startswith("holm")
    rows = list(csv.DictReader(open(out / "per_language.csv")))
    assert len(rows) == 2 * len(LANGS) and {"delta", "ci_low", "ci_high", "p", "p_adjusted", "adjustment"} <= set(rows[0])


def test_no_baseline_is_a_clear_error(tmp_path):
    params = _with_study(targets=["xnli"], retrieval=[])
    _write_run(tmp_path, "xnli", "nli", 1, {"de": 0.5}, np.random.default_rng(0))
    with pytest.raises(Exception, match="no baseline"):
        analyse_study(params, tmp_path, tmp_path / "out", metrics_file=tmp_path / "m.json")


def test_arms_share_each_resample_and_match_the_single_arm_bootstrap(study):
    """One draw of resampling counts serves every arm and seed of a language: each arm's CI, pooled over seeds and
    per seed, is exactly what the single-arm (single-seed) paired bootstrap with the same seed gives."""
    from xstilts.stats import core as C

    r, params, root = study
    t = r["targets"]["xnli"]["arms"]

    def pieces(arm):  # in the analysis' example order (sorted ids)
        recs = lambda s: sorted((json.loads(x) for x in open(root / f"xnli/{arm}/seed{s}/predictions/test/l3.jsonl")),
                                key=lambda r: r["id"])
        return np.stack([C.pieces_of("accuracy", recs(s)) for s in params.study.seeds])

    for arm in ("good", "same"):
        ref = C.paired_bootstrap(pieces("none"), pieces(arm), 500, params.stats.seed)
        got = t[arm]["per_language"]["l3"]
        assert (got["delta"], got["ci_low"], got["ci_high"], got["p"]) == pytest.approx(
            (ref.delta, ref.ci_low, ref.ci_high, ref.p))
        for i, s in enumerate(params.study.seeds):
            one = C.paired_bootstrap(pieces("none")[i], pieces(arm)[i], 500, params.stats.seed)
            mine = got["per_seed"][f"seed{s}"]
            assert (mine["delta"], mine["ci_low"], mine["ci_high"], mine["p"], mine["n_seeds"]) == pytest.approx(
                (one.delta, one.ci_low, one.ci_high, one.p, 1))


def test_holm_family_can_span_the_whole_study(study, tmp_path):
    """`stats.family: study` adjusts over every arm x target test: never smaller than the per-target adjustment."""
    r, params, root = study
    wide = params.model_copy(update={"stats": params.stats.model_copy(update={"family": "study"})})
    w = analyse_study(wide, root, tmp_path, n_resamples=500, metrics_file=tmp_path / "m.json")
    by = {c["arm"]: c for c in r["claims"]}
    for c in w["claims"]:
        assert c["adjustment"] == "holm over the study's 2 arm x target tests"
        assert c["p_adjusted"] >= by[c["arm"]]["p_adjusted"] - 1e-12
