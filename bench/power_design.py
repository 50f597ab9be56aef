"""The power calculation that sizes the mini default study (issue: "sized by power, not by what fits").

    .venv/bin/python bench/power_design.py [--scores results/study/scores.csv]

Reads the per-seed scores of a finished study (the first sizing read the 3-seed grid of commit 29fc225:
`git show 29fc225:results/study/scores.csv > /tmp/s3.csv; ... --scores /tmp/s3.csv`; by default the committed
study), measures per target the standard deviation of a per-seed language-averaged gain over the baseline (pooled
over arms: the noise the run-level t test works against), and prints, for candidate designs, the estimated minutes
on the 2-core machine and the smallest gain each target can show at power 0.8 under Holm's first step over its
arms. Writes bench/power_design.md (committed).

The cost model is measured, per run inside a stage (training + zero-shot evaluation), on this machine: from the
timed fresh-clone `make repro` of commit 3b4211b (README) for the 96-example recipes, and single runs for the
larger XNLI / PAN-X / XQuAD caps tried here (see COST).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from xstilts.stats import core as C  # noqa: E402

OUT = Path(__file__).with_name("power_design.md")
# seconds per target run (train + evaluate, inside a stage) at the given train cap; measured on the 2-core machine
COST = {("xnli", 96): 14.7, ("xnli", 384): 27.0, ("pawsx", 96): 17.7, ("pawsx", 384): 28.0, ("udpos", 96): 13.0,
        ("panx", 96): 10.8, ("xquad", 48): 28.0, ("xquad", 192): 50.0, ("mlqa", 48): 23.0, ("tydiqa", 48): 12.3}
RETRIEVAL = {"tatoeba": 10.1, "bucc2018": 8.6}  # per evaluated encoder
INTERMEDIATE = 18.0  # per single-task intermediate run (96 examples); the 4-task mix ~35
TUNING = 32.0        # per tuning study (2 trials)
FIXED = 3.1 * 60     # set-up, data, base model, 24 prepare stages, overlap, collect, stats, report
# zero-shot baseline of each recipe (mean over languages; 3 seeds at 96 examples, one run for the larger caps)
BASELINE = {("xnli", 96): 38.6, ("xnli", 384): 59.2, ("pawsx", 96): 49.3, ("pawsx", 384): 45.8, ("udpos", 96): 41.3,
            ("panx", 96): 19.9, ("xquad", 48): 4.1, ("xquad", 192): 12.9, ("mlqa", 48): 9.4, ("tydiqa", 48): 13.4,
            ("tatoeba", 0): 91.1, ("bucc2018", 0): 99.5}


def gain_sds(scores: Path) -> dict[str, float]:
    df = pd.read_csv(scores)
    df = df[(df["split"] == "test") & (df["primary"]) & (df["language"] != "en")]
    out = {}
    for t, g in df.groupby("target"):
        per = g.groupby(["arm", "seed"])["value"].mean()
        d = [per[a] - per["none"] for a in g["arm"].unique() if a != "none"]
        out[t] = float(np.sqrt(np.mean([x.var(ddof=1) for x in d])))
    return out


def design_minutes(targets: dict[str, int], retrieval: list[str], n_arms: int, seeds: int) -> float:
    runs = (n_arms + 1) * seeds
    train = sum(COST[(t, cap)] for t, cap in targets.items()) * runs
    inter = INTERMEDIATE * n_arms * seeds
    retr = sum(RETRIEVAL[t] * (n_arms * seeds + 1) for t in retrieval)
    tune = TUNING * (len(targets) + n_arms)
    return (train + inter + retr + tune + FIXED) / 60


DESIGNS = {
    "A: the 3-seed grid (6 arms incl. mix, 7 targets + 2 retrieval)":
        ({"xnli": 96, "pawsx": 96, "udpos": 96, "panx": 96, "xquad": 48, "mlqa": 48, "tydiqa": 48},
         ["tatoeba", "bucc2018"], 5, 3),
    "B: A with 5 seeds, mix moved to the multitask study":
        ({"xnli": 96, "pawsx": 96, "udpos": 96, "panx": 96, "xquad": 48, "mlqa": 48, "tydiqa": 48},
         ["tatoeba", "bucc2018"], 4, 5),
    "C: 5 seeds; XNLI at 384; floor/ceiling targets cut except XQuAD":
        ({"xnli": 384, "udpos": 96, "panx": 96, "xquad": 48}, ["tatoeba"], 4, 5),
    "D: 5 seeds; XNLI at 384, XQuAD at 192":
        ({"xnli": 384, "udpos": 96, "panx": 96, "xquad": 192}, ["tatoeba"], 4, 5),
    "E (first run): 7 seeds; XNLI at 384; targets that can show a gain":
        ({"xnli": 384, "udpos": 96, "panx": 96}, ["tatoeba"], 4, 7),
    "F (chosen after E was measured): E with 10 seeds":
        ({"xnli": 384, "udpos": 96, "panx": 96}, ["tatoeba"], 4, 10),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scores", default="results/study/scores.csv")
    ap.add_argument("--alpha", type=float, default=0.05)
    a = ap.parse_args()
    sds = gain_sds(Path(a.scores))
    typical = float(np.median(list(sds.values())))
    doc = ["# Sizing the mini default study by power (bench/power_design.py)", "",
           f"Noise measured on `{a.scores}`: the sd of a per-seed language-averaged gain over `none`, pooled over the "
           "arms of each target (what the run-level t test works against): "
           + ", ".join(f"{t} {v:.1f}" for t, v in sds.items())
           + f" points (median {typical:.1f}). A target retrained at a new cap is assumed to have the median noise "
           "until measured.", "",
           "## Baselines: which recipe can show a gain at all (within 5 points of chance, 0 or 100: cannot)", "",
           "| target | train cap | zero-shot baseline | chance | can show a gain |", "|---|---|---|---|---|"]
    chance = {"xnli": 100 / 3, "pawsx": 50.0}
    for (t, cap), b in BASELINE.items():
        c = chance.get(t, 0.0)
        ok = c + 5 <= b <= 95
        doc.append(f"| {t} | {cap or '–'} | {b:.1f} | {c:.1f} | {'yes' if ok else '**no**'} |")
    doc += ["", "## Designs: minutes (2-core machine, estimated from measured per-run costs) and the smallest gain "
            "each target shows at power 0.8", "",
            "| design | seeds | arms | minutes | detectable gain per target (Holm's first step over the arms) | "
            "seeds for 3 points (median noise) |", "|---|---|---|---|---|---|"]
    for name, (targets, retrieval, n_arms, seeds) in DESIGNS.items():
        minutes = design_minutes(targets, retrieval, n_arms, seeds)
        alpha = a.alpha / n_arms
        cells = []
        for t, cap in list(targets.items()) + [(r, 0) for r in retrieval]:
            sd = sds.get(t, typical) if cap in (96, 48, 0) else typical
            flag = "" if chance.get(t, 0) + 5 <= BASELINE[(t, cap)] <= 95 else " (floor)"
            cells.append(f"{t} {C.detectable_effect(sd, seeds, alpha):.1f}{flag}")
        need = next((s for s in range(3, 200) if C.power_t(3.0, typical, s, alpha) >= 0.8), None)
        doc.append(f"| {name} | {seeds} | {n_arms} + none | {minutes:.0f} | {', '.join(cells)} | {need} |")
    doc += ["", "Measured afterwards (fresh-clone `make repro` of design E, MLflow stage times): 37 min 57 s in all — "
            "XNLI at 384 examples 26.3 s a run, UD-POS 8.4, PAN-X 8.2, Tatoeba 6.9 s an encoder, intermediate runs "
            "3.8-10.7 s, tuning 8 s a trial, fixed costs 3.6 min; the estimate above (50 min) was high. At the "
            "measured costs 10 seeds take about 52 minutes (design F): the committed study runs F.",
            "", "Seeds are the lever: the run's luck is shared by all its languages (shared-noise share 0.4–0.7), so "
            "languages and test examples average away only the residual. Three seeds leave the t test 2 degrees of "
            "freedom (t quantile 9.9 at Holm's 0.0125), which makes every gain under ~20 points undetectable. A "
            "3-point gain at the measured noise needs the seeds in the last column: no 60-minute design reaches it "
            "on this machine; the study states its detectable gain per target instead."]
    OUT.write_text("\n".join(doc) + "\n", encoding="utf-8")
    print("\n".join(doc))


if __name__ == "__main__":
    main()
