"""`xstilts report` on a synthetic study: the page answers first, states the planted finding, names controls and
flags, and its figures exist and are linked."""

import csv
import json
import re

import numpy as np
import pytest

from xstilts.errors import XstiltsError
from xstilts.report import write_report, xtreme_table, seed_averages
from xstilts.stats.analysis import analyse_study
from xstilts.study import xtreme_task_score

from conftest import params_with_study, write_synthetic_run

LANGS = [f"l{i}" for i in range(8)]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    runs, stats_root = tmp / "runs", tmp / "stats"
    params = params_with_study(targets=["xnli", "pawsx"], retrieval=[], seeds=[1, 2, 3, 4, 5],
                               arms={"none": [], "good": ["sick"], "same": ["siqa"]})
    rng = np.random.default_rng(3)
    base = {l: 0.5 + 0.02 * i for i, l in enumerate(LANGS)}
    for s in params.study.seeds:
        write_synthetic_run(runs, "xnli", "none", s, base, rng, run_sd=0.01)
        write_synthetic_run(runs, "xnli", "good", s, {l: a + 0.15 for l, a in base.items()}, rng, run_sd=0.01)
        write_synthetic_run(runs, "xnli", "same", s, base, rng, run_sd=0.01)
        for arm in ("none", "good", "same"):  # two test languages at chance, as PAWS-X at mini size
            write_synthetic_run(runs, "pawsx", arm, s, {"de": 0.5, "zh": 0.51}, rng)
    overlap_root = tmp / "overlap"
    overlap_root.mkdir()
    overlap = {"ngram": 8, "controls": {"xnli": {"same": {"label": "same-data control", "why": "planted"}}},
               "rows": [{"arm": "same", "task": "siqa", "target": "xnli", "split": "train", "train_units": 10,
                         "target_units": 10, "exact_train_in_target": 10, "exact_train_in_target_pct": 100.0,
                         "exact_target_in_train": 10, "exact_target_in_train_pct": 100.0, "ngram_target_units": 10,
                         "ngram_target_units_pct": 100.0}]}
    (overlap_root / f"{params.tracking.experiment}.json").write_text(json.dumps(overlap))
    analyse_study(params, runs, stats_root, n_resamples=300, metrics_file=tmp / "stats.json",
                  overlap_file=overlap_root / f"{params.tracking.experiment}.json")
    out = write_report(params, tmp / "reports", stats_root, runs, overlap_root)
    return out, params, runs


def test_the_page_answers_first_and_states_the_planted_gain(report):
    out, params, _ = report
    page = (out / "README.md").read_text()
    assert page.index("**Question.**") < page.index("**Answer, per target**") < page.index("## Headline findings")
    answer = page.split("**Answer, per target**")[1].split("## Headline")[0]
    assert re.search(r"\*\*xnli\*\* .*significant gain over training randomness — good Δ \+1\d\.\d\d \[", answer)
    assert "**pawsx**" in answer and "cannot show a gain at this size" in answer
    head = page.split("## Headline findings")[1].split("\n## ")[0]
    assert re.search(r"1 of 4 arm x target comparisons are significant transfer effects .*good on xnli Δ \+1\d", head)
    assert "Same-data controls" in head and "same→xnli" in head
    assert "Smallest gain this study detects" in head and "Noise:" in head


def test_design_tables_and_links(report):
    out, _, _ = report
    page = (out / "README.md").read_text()
    assert "### Variance components" in page and "shared-noise share" in page
    assert "### What this size can detect" in page and "seeds for 3 points" in page
    assert "## Overlap of the arms' training data" in page and "| same | siqa | xnli | train |" in page
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert {"figures/gains_heatmap.png", "figures/forest_xnli.png", "figures/seeds.png"} <= set(links)
    for link in links:
        assert (out / link).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", link
    assert re.search(r"\| xnli \| good \| \+1\d\.\d\d \|.*\*", page)
    assert re.search(r"\| xnli \| same \| .*\| same-data control \|", page)
    assert "Stand-ins" in page and "SICK" in page and "paper: XLM-R Large (test; mean of these tasks)" in page


def test_dvc_plot_tables_and_the_xtreme_summary(report):
    out, params, runs = report
    gains = list(csv.DictReader(open(out / "plots" / "gains.csv")))
    assert {r["cell"] for r in gains} == {"xnli/good", "xnli/same", "pawsx/good", "pawsx/same"}
    assert [r["significant"] for r in gains if r["cell"] == "xnli/good"] == ["True"]
    seeds = list(csv.DictReader(open(out / "plots" / "seeds.csv")))
    assert len(seeds) == 2 * 3 * 5
    scores = seed_averages(params, runs, xtreme_task_score)
    targets, rows = xtreme_table(params, scores)
    by = {r["arm"]: r for r in rows}
    per_seed = [np.mean([scores[t]["good"][k] for t in targets]) for k in (1, 2, 3, 4, 5)]
    assert by["good"]["aggregate"][0] == pytest.approx(np.mean(per_seed), abs=1e-9)
    assert by["good"]["xnli"][0] > by["none"]["xnli"][0] + 10


def test_xtreme_task_score_counts_qa_as_the_mean_of_em_and_f1():
    m = {"task": "xquad", "splits": {"test": {"en": {"exact_match": 90.0, "f1": 95.0},
                                              "de": {"exact_match": 40.0, "f1": 60.0},
                                              "zh": {"exact_match": 20.0, "f1": 30.0}}}}
    assert xtreme_task_score(m) == pytest.approx(((40 + 60) / 2 + (20 + 30) / 2) / 2)


def test_report_without_stats_is_a_clear_error(tmp_path):
    params = params_with_study(targets=["xnli"], retrieval=[])
    with pytest.raises(XstiltsError, match="run `xstilts stats`"):
        write_report(params, tmp_path / "reports", tmp_path / "stats", tmp_path / "runs")
