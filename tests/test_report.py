"""`xstilts report` on a synthetic study: the page states the planted finding, its figures exist and are linked."""

import csv
import re

import numpy as np
import pytest

from xstilts.errors import XstiltsError
from xstilts.report import write_report, xtreme_table, seed_averages
from xstilts.stats.analysis import analyse_study

from conftest import params_with_study, write_synthetic_run

LANGS = [f"l{i}" for i in range(8)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    runs, stats_root = tmp / "runs", tmp / "stats"
    params = params_with_study(targets=["xnli", "pawsx"], retrieval=[], seeds=[1, 2, 3],
                               arms={"none": [], "good": ["sick"], "same": ["siqa"]})
    rng = np.random.default_rng(3)
    base = {l: 0.5 + 0.02 * i for i, l in enumerate(LANGS)}
    for s in params.study.seeds:
        write_synthetic_run(runs, "xnli", "none", s, base, rng)
        write_synthetic_run(runs, "xnli", "good", s, {l: a + 0.15 for l, a in base.items()}, rng)
        write_synthetic_run(runs, "xnli", "same", s, base, rng)
        for arm in ("none", "good", "same"):  # two test languages, as PAWS-X in the bundle
            write_synthetic_run(runs, "pawsx", arm, s, {"de": 0.6, "zh": 0.55}, rng)
    analyse_study(params, runs, stats_root, n_resamples=300, metrics_file=tmp / "stats.json")
    out = write_report(params, tmp / "reports", stats_root, runs)
    return out, params, runs


def test_the_page_states_the_planted_gain_and_links_existing_figures(report):
    out, params, _ = report
    page = (out / "README.md").read_text()
    assert "## Headline findings" in page and "## Caveats" in page
    head = page.split("## Headline findings")[1].split("##")[0]
    assert re.search(r"1 of 4 arm x target gains are significant after Holm over each target's arms .*good on xnli "
                     r"Δ \+1[0-9]\.\d\d", head), head
    # every image the page links exists and is a PNG
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert {"figures/gains_heatmap.png", "figures/forest_xnli.png", "figures/seeds.png"} <= set(links)
    for link in links:
        assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    # the claims table marks the significant cell; the caveats name the untestable 2-language target
    assert re.search(r"\| xnli \| good \| \+1\d\.\d\d \|.*\*", page)
    assert "pawsx (2)" in page and "Stand-ins" in page and "SICK" in page


def test_dvc_plot_tables_and_the_xtreme_summary(report):
    out, params, runs = report
    gains = list(csv.DictReader(open(out / "plots" / "gains.csv")))
    assert {r["cell"] for r in gains} == {"xnli/good", "xnli/same", "pawsx/good", "pawsx/same"}
    assert [r["significant"] for r in gains if r["cell"] == "xnli/good"] == ["True"]
    seeds = list(csv.DictReader(open(out / "plots" / "seeds.csv")))
    assert len(seeds) == 2 * 3 * 3
    targets, rows = xtreme_table(params, seed_averages(params, runs))
    by = {r["arm"]: r for r in rows}
    # the aggregate is the per-seed mean over targets, then mean over seeds
    per_seed = [np.mean([float(s["zero_shot"]) for s in seeds if s["arm"] == "good" and s["seed"] == str(k)])
                for k in (1, 2, 3)]
    assert by["good"]["aggregate"][0] == pytest.approx(np.mean(per_seed), abs=1e-3)
    assert by["good"]["xnli"][0] > by["none"]["xnli"][0] + 10


def test_report_without_stats_is_a_clear_error(tmp_path):
    params = params_with_study(targets=["xnli"], retrieval=[])
    with pytest.raises(XstiltsError, match="run `xstilts stats`"):
        write_report(params, tmp_path / "reports", tmp_path / "stats", tmp_path / "runs")


def test_headline_flags_significant_claims_whose_ci_includes_zero():
    from xstilts.report import headline

    params = params_with_study(targets=["xnli"], retrieval=[], arms={"none": [], "good": ["sick"], "same": ["siqa"]})
    across = {"test": "sign-flip", "adjustment": "holm over xnli's 2 arms", "p_wilcoxon": 0.01, "n_languages": 10,
              "n_seeds": 3, "min_attainable_p": 0.002}
    stats = {"xnli": {"arms": {
        "good": {"across": {**across, "delta": 3.0, "ci_low": 1.0, "ci_high": 5.0, "p_sign_flip": 0.002,
                            "p_adjusted": 0.004}},
        "same": {"across": {**across, "delta": -2.6, "ci_low": -5.7, "ci_high": 0.4, "p_sign_flip": 0.002,
                            "p_adjusted": 0.004}}}}}
    lines = headline(params, stats, {})
    assert lines[0].startswith("2 of 2 arm x target gains are significant")
    fragile = [l for l in lines if "hierarchical 95 % CI that includes 0" in l]
    assert len(fragile) == 1 and "same→xnli" in fragile[0] and "good→xnli" not in fragile[0]
