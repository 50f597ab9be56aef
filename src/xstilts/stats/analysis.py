"""`xstilts stats`: the study's claims, from its runs (results/runs/<target>/<arm>/seed<s>/).

For every target and every arm against the baseline `none` (same seeds, same test examples: paired):
  per language   example-level paired bootstrap pooled over seeds (and per seed), Benjamini-Hochberg over the
                 target's languages (a screen);
  across         sign-flip (primary, Holm over the whole arm x target grid: the confirmatory family) and Wilcoxon
                 on seed-averaged gains, hierarchical bootstrap CI, replicability count (partial conjunction);
  seeds          ASO ε_min of the arm's seed-level zero-shot averages over the baseline's;
  pooled         mixed model score ~ arm + (1|language) + (1|seed) per target;
  selection      best intermediate arm per target chosen on English dev, its test gain reported.
Writes results/stats/<study>/<target>.json (DVC metrics), claims.csv and per_language.csv (tidy).
"""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_file, write_json
from ..config import Params
from ..errors import XstiltsError
from ..evaluation.predict import primary
from ..study import run_dir, run_metrics, study_of
from . import core as C

BASELINE = "none"


def _load_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def _pieces(run: Path, lang: str, metric: str) -> dict[str, np.ndarray] | None:
    f = run / "predictions" / "test" / f"{lang}.jsonl"
    if not f.is_file():
        return None
    recs = _load_jsonl(f)
    try:
        p = C.pieces_of(metric, recs)
    except ValueError:
        return None
    return {r["id"]: row for r, row in zip(recs, p)}


def _mean_dev(runs: list[dict], key: str) -> float | None:
    """Mean over seeds of the English-dev score the target phase selected on (retrieval runs have none)."""
    devs = [d[key] for m in runs for d in ((m.get("train") or {}).get("dev") or {}).values() if key in d]
    return float(np.mean(devs)) if devs else None


def _aligned(runs_a: list[dict], runs_b: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(seeds, n, 2) pieces of both arms on the test examples every run scored, in one order."""
    ids = sorted(set.intersection(*[set(r) for r in runs_a + runs_b]))
    return (np.stack([np.stack([r[i] for i in ids]) for r in runs_a]),
            np.stack([np.stack([r[i] for i in ids]) for r in runs_b]))


def analyse_target(params: Params, target: str, root: Path, n_resamples: int, seed: int) -> dict:
    study = study_of(params)
    seeds = study.seeds
    metrics, missing = run_metrics(params, target, root)
    if not any(a == BASELINE for a, _ in metrics):
        raise XstiltsError(f"{target}: no baseline (arm {BASELINE!r}) runs under {root / target}: run the study first")
    any_m = next(iter(metrics.values()))
    metric, key = any_m["metric"], primary(any_m["metric"])
    # every arm is compared with the same baseline runs: read each prediction file once
    pieces = functools.cache(lambda a, s, lang: _pieces(run_dir(target, a, s, root), lang, metric))
    dev = {a: _mean_dev([m for (b, _), m in metrics.items() if b == a], key) for a in study.arms}

    def score(a, s, lang):
        return metrics[(a, s)]["splits"]["test"].get(lang, {}).get(key)

    langs = sorted({l for m in metrics.values() for l in m["splits"].get("test", {})} - {"en"})
    out: dict = {"target": target, "metric": metric, "primary": key, "languages": langs, "seeds": seeds,
                 "missing_runs": missing, "arms": {}}
    scores_rows = []
    for (a, s), m in metrics.items():
        for lang in langs:
            v = score(a, s, lang)
            if v is not None:
                scores_rows.append({"score": v, "arm": a, "language": lang, "seed": s})
    for arm in [a for a in study.arms if a != BASELINE]:
        paired = [s for s in seeds if (arm, s) in metrics and (BASELINE, s) in metrics]
        if not paired:
            continue
        res: dict = {"n_seeds": len(paired), "per_language": {}}
        # per language: example-level bootstrap, pooled over seeds and per seed
        for lang in langs:
            pa = [pieces(arm, s, lang) for s in paired]
            pb = [pieces(BASELINE, s, lang) for s in paired]
            if any(x is None for x in pa + pb):
                continue
            A, B = _aligned(pa, pb)
            pooled = C.paired_bootstrap(B, A, n_resamples, seed)
            per_seed = {f"seed{s}": C.paired_bootstrap(B[i], A[i], n_resamples, seed).as_dict()
                        for i, s in enumerate(paired)}
            one_sided = pooled.p / 2 if pooled.delta > 0 else 1 - pooled.p / 2
            res["per_language"][lang] = {**pooled.as_dict(), "p_one_sided": one_sided, "per_seed": per_seed}
        pl = res["per_language"]
        if pl:
            adj = C.adjust([v["p"] for v in pl.values()], "fdr_bh")
            for v, q in zip(pl.values(), adj):
                v["p_adjusted"], v["adjustment"] = float(q), "fdr_bh over the target's languages (screen)"
            res["replicability"] = {m: C.partial_conjunction([v["p_one_sided"] for v in pl.values()], method=m)
                                    for m in ("bonferroni", "fisher")}
        # across languages: (languages, seeds) gains of the corpus scores
        g_langs = [l for l in langs if all(score(arm, s, l) is not None and score(BASELINE, s, l) is not None
                                           for s in paired)]
        gains = np.array([[score(arm, s, l) - score(BASELINE, s, l) for s in paired] for l in g_langs])
        if len(g_langs):
            res["across"] = C.across_languages(gains, n_resamples, seed)
            res["across"]["test"] = "sign-flip permutation on seed-averaged per-language gains"
        # seeds: ASO on the zero-shot averages
        zs = lambda a: [float(np.mean([score(a, s, l) for l in g_langs])) for s in paired] if g_langs else []
        res["seed_scores"] = {"arm": zs(arm), "baseline": zs(BASELINE)}
        res["aso_epsilon_min"] = C.aso_epsilon(zs(arm), zs(BASELINE), seed=seed) if len(paired) >= 2 else None
        res["dev"] = dev[arm]
        out["arms"][arm] = res
    out["baseline_dev"] = dev[BASELINE]
    if len({r["arm"] for r in scores_rows}) > 1 and len(langs) > 1:
        out["mixed_model"] = C.mixed_model(scores_rows)
    out["selection"] = C.select_on_dev({a: d for a, d in dev.items() if d is not None},
                                       {a: r["across"] for a, r in out["arms"].items() if "across" in r})
    return out


def analyse_study(params: Params, root: str | Path = "results/runs", out_root: str | Path = "results/stats",
                  n_resamples: int = 2000, seed: int = 0, metrics_file: str | Path = "results/metrics/stats.json") -> dict:
    study = study_of(params)
    name = params.tracking.experiment
    out_dir = Path(out_root) / name
    results = {t: analyse_target(params, t, Path(root), n_resamples, seed) for t in study.targets + study.retrieval
               if (Path(root) / t).is_dir()}
    if not results:
        raise XstiltsError(f"no runs under {root}: run the study (`dvc repro`) before `xstilts stats`")
    # the confirmatory family: every arm x target across-language test of the study, Holm
    cells = [(t, a) for t, r in results.items() for a, x in r["arms"].items() if "across" in x]
    holm = C.adjust([results[t]["arms"][a]["across"]["p_sign_flip"] for t, a in cells], "holm")
    for (t, a), q in zip(cells, holm):
        results[t]["arms"][a]["across"].update(p_adjusted=float(q), adjustment=f"holm over {len(cells)} arm x target tests")
    claims, per_lang = [], []
    for t, r in results.items():
        for a, x in r["arms"].items():
            if "across" in x:
                c = x["across"]
                claims.append({"target": t, "arm": a, "delta": c["delta"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                               "test": c["test"], "p": c["p_sign_flip"], "p_adjusted": c["p_adjusted"],
                               "adjustment": "holm", "p_wilcoxon": c["p_wilcoxon"],
                               "aso_epsilon_min": x.get("aso_epsilon_min"),
                               "replicability": x.get("replicability", {}).get("bonferroni", {}).get("count"),
                               "n_languages": c["n_languages"], "n_seeds": c["n_seeds"],
                               "min_attainable_p": c["min_attainable_p"]})
            for lang, v in x["per_language"].items():
                per_lang.append({"target": t, "arm": a, "language": lang, "delta": v["delta"], "ci_low": v["ci_low"],
                                 "ci_high": v["ci_high"], "p": v["p"], "p_adjusted": v["p_adjusted"],
                                 "adjustment": "fdr_bh", "n_examples": v["n_examples"], "n_seeds": v["n_seeds"]})
        write_json(out_dir / f"{t}.json", r)
    for fname, rows in (("claims.csv", claims), ("per_language.csv", per_lang)):
        with atomic_file(out_dir / fname) as fh:
            if rows:
                w = csv.DictWriter(fh, fieldnames=list(rows[0]))
                w.writeheader()
                w.writerows(rows)
    write_json(Path(metrics_file), {"study": name, "claims": {
        f"{c['target']}/{c['arm']}": {k: c[k] for k in ("delta", "ci_low", "ci_high", "p", "p_adjusted")}
        for c in claims}})
    return {"study": name, "out_dir": str(out_dir), "targets": results, "claims": claims, "per_language": per_lang}
