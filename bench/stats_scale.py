"""Benchmark (not a test): the per-language statistics of a large study on this machine.

40 languages x 5 seeds x 5 arms (+ baseline) with 10,000 bootstrap resamples over 5,000 examples per language,
seqeval-F1-like pieces; then the across-language tests of every arm. Prints seconds and peak memory, and the
reference (a single arm, a single seed) in the same run, so the cost of pooling arms and seeds reads as a ratio.
Then the stats stage's own code path at the same scale (`--end-to-end`, default on): synthetic run folders
(metrics.json + one prediction line per example, as a real study writes them) read and analysed by
`stats.analysis.analyse_target` — per-language bootstraps pooled and per seed, across-language tests, ASO, the
mixed model, selection — so file reading and the per-seed detail are in the number too.

    .venv/bin/python bench/stats_scale.py [--languages 40 --seeds 5 --arms 5 --resamples 10000 --examples 5000]
"""

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from xstilts.stats import core as C


def pieces(rng, seeds, n):
    t = rng.integers(0, 4, size=(seeds, n))
    q = np.clip(t + rng.integers(-1, 2, size=(seeds, n)), 0, None)
    c = np.minimum(t, q) * rng.binomial(1, 0.7, size=(seeds, n))
    return np.stack([2.0 * c, t + q], axis=-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--languages", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--arms", type=int, default=5)
    ap.add_argument("--resamples", type=int, default=10_000)
    ap.add_argument("--examples", type=int, default=5_000)
    ap.add_argument("--end-to-end", action=argparse.BooleanOptionalAction, default=True)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    data = [(pieces(rng, a.seeds, a.examples), {f"arm{j}": pieces(rng, a.seeds, a.examples) for j in range(a.arms)})
            for _ in range(a.languages)]
    t = time.perf_counter()
    C.paired_bootstrap(data[0][0][0], data[0][1]["arm0"][0], a.resamples)
    ref = time.perf_counter() - t
    t = time.perf_counter()
    per_lang = [C.paired_bootstrap_arms(b, arms, a.resamples, seed=i) for i, (b, arms) in enumerate(data)]
    boot = time.perf_counter() - t
    t = time.perf_counter()
    for j in range(a.arms):
        g = np.array([[C.ratio(arms[f"arm{j}"][s]) - C.ratio(b[s]) for s in range(a.seeds)] for b, arms in data])
        C.run_level_test(g)
        C.per_language_run_tests(g)
        C.partial_conjunction([r[f"arm{j}"].p for r in per_lang])
    across = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"reference: 1 language x 1 seed x 1 arm, {a.resamples} resamples of {a.examples} examples: {ref:.2f} s")
    print(f"per-language bootstrap, {a.languages} languages x {a.seeds} seeds x {a.arms} arms: {boot:.1f} s "
          f"({boot / ref:.1f}x the reference for {a.languages * a.seeds * a.arms}x the comparisons)")
    print(f"run-level tests (claim, per-language screen, replicability) for {a.arms} arms: "
          f"{across:.1f} s")
    print(f"total {boot + across:.1f} s; peak RSS {peak:.0f} MB")
    if a.end_to_end:
        end_to_end(a, ref)


def end_to_end(a, ref: float) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import params_with_study, write_synthetic_run

    from xstilts.stats.analysis import analyse_target

    real = params_with_study()
    arms = ["none"] + [a_ for a_ in real.study.arms if a_ != "none"][: a.arms]
    params = params_with_study(arms={x: real.study.arms[x] for x in arms}, intermediate_arms=arms[1:],
                               seeds=list(range(1, a.seeds + 1)), targets=["xnli"], retrieval=[])
    rng = np.random.default_rng(0)
    langs = [f"l{i:02d}" for i in range(a.languages)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        for j, arm in enumerate(arms):
            for s in params.study.seeds:
                write_synthetic_run(root, "xnli", arm, s, {l: 0.5 + 0.005 * j + 0.002 * i for i, l in enumerate(langs)},
                                    rng, n=a.examples)
        written = time.perf_counter() - t
        t = time.perf_counter()
        r = analyse_target(params, "xnli", root, a.resamples, 0)
        took = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    n_files = len(arms) * a.seeds * a.languages
    print(f"end to end (stats.analysis.analyse_target): {len(arms) - 1} arms + baseline x {a.seeds} seeds x "
          f"{a.languages} languages = {n_files} prediction files of {a.examples} examples (written in {written:.0f} s): "
          f"{took:.1f} s ({took / ref:.0f}x the reference), {len(r['arms'])} claims; peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    main()
