"""`stats.analysis` on a study's run folders: a planted gain is found over run noise, a null arm is not, a
same-data control is labelled, files are tidy."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from xstilts.stats.analysis import analyse_study, floor_check

from conftest import params_with_study as _with_study, write_synthetic_run as _write_run

LANGS = [f"l{i}" for i in range(10)]
SEEDS = [1, 2, 3, 4, 5]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    params = _with_study(targets=["xnli"], retrieval=[], arms={"none": [], "good": ["sick"], "same": ["siqa"]},
                         seeds=SEEDS)
    rng = np.random.default_rng(1)  # fixed draw; a null arm still rejects in ~5 % of draws by design
    base = {l: 0.5 + 0.02 * i for i, l in enumerate(LANGS)}
    for s in params.study.seeds:  # run noise (sd 2 points) shared by every language of a run
        _write_run(root, "xnli", "none", s, base, rng, run_sd=0.02)
        _write_run(root, "xnli", "good", s, {l: a + 0.12 for l, a in base.items()}, rng, run_sd=0.02)
        _write_run(root, "xnli", "same", s, base, rng, run_sd=0.02)
    out = tmp_path_factory.mktemp("stats")
    overlap = out / "overlap.json"  # as the overlap stage writes it: `same` trains on xnli's own training data
    overlap.write_text(json.dumps({"controls": {"xnli": {"same": {"label": "same-data control", "why": "test"}}}}))
    r = analyse_study(params, root, out, n_resamples=500, metrics_file=out / "stats.json", overlap_file=overlap)
    return r, params, root


def test_a_planted_gain_is_a_claim_and_a_null_arm_is_not(study):
    r, _, _ = study
    claims = {c["arm"]: c for c in r["claims"]}
    assert set(claims) == {"good", "same"}
    good, same = claims["good"], claims["same"]
    assert 8 < good["delta"] < 16 and good["ci_low"] > 0 and good["p_adjusted"] < 0.05
    assert good["n_languages"] == 10 and good["n_seeds"] == 5 and good["test"].startswith("paired t over 5 seeds")
    assert good["adjustment"] == "holm over xnli's 2 arms" and good["significant"] and good["transfer_claim"]
    assert same["ci_low"] < 0 < same["ci_high"] and same["p_adjusted"] > 0.05 and not same["significant"]
    assert same["control"] == "same-data control" and not same["transfer_claim"]
    assert good["replicability"] >= 1 and good["aso_epsilon_min"] < 0.2
    t = r["targets"]["xnli"]
    # the per-language example-level bootstrap is kept, labelled conditional
    cond = t["arms"]["good"]["per_language"]["l0"]["conditional"]
    assert cond["n_examples"] == 120 and "conditional" in cond["test"]


def test_the_claim_is_the_t_test_over_seeds_of_the_language_averaged_gain(study):
    """Known answer: scipy's one-sample t test on the per-seed gains read back from the run folders."""
    from scipy import stats as sps

    r, params, root = study
    def zs(arm, s):
        m = json.loads((root / f"xnli/{arm}/seed{s}/metrics.json").read_text())["splits"]["test"]
        return np.mean([m[l]["accuracy"] for l in LANGS])
    d = [zs("good", s) - zs("none", s) for s in SEEDS]
    c = r["targets"]["xnli"]["arms"]["good"]["claim"]
    ref = sps.ttest_1samp(d, 0.0)
    assert c["p"] == pytest.approx(ref.pvalue) and c["delta"] == pytest.approx(np.mean(d))
    lo, hi = ref.confidence_interval(0.95)
    assert (c["ci_low"], c["ci_high"]) == pytest.approx((lo, hi))


def test_variance_components_and_design_are_reported(study):
    r, _, _ = study
    t = r["targets"]["xnli"]
    v = t["baseline"]["variance"]
    assert v["n_seeds"] == 5 and v["n_languages"] == 10 and 0 <= v["share"] <= 1 and v["run"] >= 0
    d = t["design"]
    assert d["gain_sd"] > 0 and d["mde_holm"] > d["mde"] > 0 and d["family_size"] == 2
    assert not t["floor"]["cannot_show_gain"]


def test_stats_files_are_tidy(study):
    r, _, _ = study
    out = Path(r["out_dir"])
    assert json.loads((out / "xnli.json").read_text())["arms"]["good"]["claim"]["adjustment"].startswith("holm")
    rows = list(csv.DictReader(open(out / "per_language.csv")))
    assert len(rows) == 2 * len(LANGS)
    assert {"delta", "ci_low", "ci_high", "p", "p_adjusted", "conditional_p", "conditional_ci_low"} <= set(rows[0])


def test_too_few_seeds_give_no_p_but_say_why(tmp_path):
    params = _with_study(targets=["xnli"], retrieval=[], arms={"none": [], "good": ["sick"]}, seeds=[1, 2])
    rng = np.random.default_rng(0)
    for s in (1, 2):
        _write_run(tmp_path, "xnli", "none", s, {"de": 0.5, "zh": 0.5}, rng)
        _write_run(tmp_path, "xnli", "good", s, {"de": 0.9, "zh": 0.9}, rng)
    r = analyse_study(params, tmp_path, tmp_path / "out", n_resamples=200, metrics_file=tmp_path / "m.json")
    (c,) = r["claims"]
    assert c["p"] is None and c["p_adjusted"] is None and not c["significant"] and "calibrated from 3" in c["why_no_p"]


def test_no_baseline_is_a_clear_error(tmp_path):
    params = _with_study(targets=["xnli"], retrieval=[])
    _write_run(tmp_path, "xnli", "nli", 1, {"de": 0.5}, np.random.default_rng(0))
    with pytest.raises(Exception, match="no baseline"):
        analyse_study(params, tmp_path, tmp_path / "out", metrics_file=tmp_path / "m.json")


def test_floor_check_flags_chance_zero_and_ceiling():
    assert floor_check("xnli", 36.0)["cannot_show_gain"] and "chance (33.3)" in floor_check("xnli", 36.0)["why"]
    assert not floor_check("xnli", 40.0)["cannot_show_gain"]
    assert floor_check("pawsx", 52.0)["cannot_show_gain"]            # 2 labels: chance 50
    assert floor_check("xquad", 4.1)["cannot_show_gain"] and not floor_check("panx", 19.9)["cannot_show_gain"]
    assert floor_check("bucc2018", 99.5)["cannot_show_gain"] and "100" in floor_check("bucc2018", 99.5)["why"]


def test_holm_family_can_span_the_whole_study(study, tmp_path):
    """`stats.family: study` adjusts over every arm x target test: never smaller than the per-target adjustment."""
    r, params, root = study
    wide = params.model_copy(update={"stats": params.stats.model_copy(update={"family": "study"})})
    w = analyse_study(wide, root, tmp_path, n_resamples=500, metrics_file=tmp_path / "m.json")
    by = {c["arm"]: c for c in r["claims"]}
    for c in w["claims"]:
        assert c["adjustment"] == "holm over the study's 2 arm x target tests"
        assert c["p_adjusted"] >= by[c["arm"]]["p_adjusted"] - 1e-12
