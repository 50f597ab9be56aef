"""`xstilts stats`: the study's claims, from its runs (results/runs/<target>/<arm>/seed<s>/).

For every target and every arm against the baseline `none` (same seeds, same test examples: paired):
  per language   example-level paired bootstrap pooled over seeds (and per seed), Benjamini-Hochberg over the
                 target's languages (a screen);
  across         sign-flip (primary; Holm over the confirmatory family, params `stats.family`: each target's arms
                 or the whole arm x target grid) and Wilcoxon
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


def _seed_groups(arms: list[str], seeds: list[int], metrics: dict) -> dict[tuple, list[str]]:
    """Arms grouped by the seeds they share with the baseline (normally one group: every arm, every seed)."""
    groups: dict[tuple, list[str]] = {}
    for a in arms:
        groups.setdefault(tuple(s for s in seeds if (a, s) in metrics and (BASELINE, s) in metrics), []).append(a)
    return groups


def _aligned(base: list[dict], arms: dict[str, list[dict]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(seeds, n, 2) pieces of the baseline and of each arm on the test examples every run scored, in one order."""
    runs = base + [r for x in arms.values() for r in x]
    ids = sorted(set.intersection(*[set(r) for r in runs]))
    stack = lambda rs: np.stack([np.stack([r[i] for i in ids]) for r in rs])
    return stack(base), {a: stack(x) for a, x in arms.items()}


def analyse_target(params: Params, target: str, root: Path, n_resamples: int, seed: int) -> dict:
    study = study_of(params)
    alpha = params.stats.alpha
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
    arms = [a for a in study.arms if a != BASELINE
            and any((a, s) in metrics and (BASELINE, s) in metrics for s in seeds)]
    # one resample per language shared by every arm (and seed) that has that language's predictions everywhere
    per_language: dict[str, dict] = {a: {} for a in arms}
    for lang in langs:
        for paired, group in _seed_groups(arms, seeds, metrics).items():
            pb = [pieces(BASELINE, s, lang) for s in paired]
            pa = {a: [pieces(a, s, lang) for s in paired] for a in group}
            pa = {a: x for a, x in pa.items() if not any(p is None for p in x)}
            if not pa or any(p is None for p in pb):
                continue
            B, A = _aligned(pb, pa)
            pooled, per_seed = C.paired_bootstrap_arms(B, A, n_resamples, seed, per_seed=True)
            for a, t in pooled.items():
                one_sided = t.p / 2 if t.delta > 0 else 1 - t.p / 2
                per_language[a][lang] = {**t.as_dict(), "p_one_sided": one_sided,
                                         "per_seed": {f"seed{s}": per_seed[i][a].as_dict()
                                                      for i, s in enumerate(paired)}}
    for arm in arms:
        paired = [s for s in seeds if (arm, s) in metrics and (BASELINE, s) in metrics]
        res: dict = {"n_seeds": len(paired), "per_language": per_language[arm]}
        pl = res["per_language"]
        if pl:
            adj = C.adjust([v["p"] for v in pl.values()], "fdr_bh")
            for v, q in zip(pl.values(), adj):
                v["p_adjusted"], v["adjustment"] = float(q), "fdr_bh over the target's languages (screen)"
            res["replicability"] = {m: C.partial_conjunction([v["p_one_sided"] for v in pl.values()], alpha=alpha,
                                                             method=m)
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


def _holm_families(results: dict, family: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The confirmatory families of across-language tests: per target (its arms) or the whole arm x target grid."""
    cells = [(t, a) for t, r in results.items() for a, x in r["arms"].items() if "across" in x]
    if family == "study":
        return [(f"holm over the study's {len(cells)} arm x target tests", cells)]
    return [(f"holm over {t}'s {sum(1 for c in cells if c[0] == t)} arms", [c for c in cells if c[0] == t])
            for t in results]


def claim_rows(results: dict[str, dict], alpha: float) -> list[dict]:
    """One row per arm x target with an across-language test: the claims table of claims.csv and the report.
    `results` are `analyse_target`'s outputs after Holm (or the `results/stats/<study>/<target>.json` files)."""
    rows = []
    for t, r in results.items():
        for a, x in r["arms"].items():
            c = x.get("across")
            if not c:
                continue
            rep = (x.get("replicability") or {}).get("bonferroni") or {}
            rows.append({"target": t, "arm": a, "delta": c["delta"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                         "test": c["test"], "p": c["p_sign_flip"], "p_adjusted": c["p_adjusted"],
                         "adjustment": c["adjustment"], "significant": bool(c["p_adjusted"] <= alpha),
                         "p_wilcoxon": c["p_wilcoxon"], "aso_epsilon_min": x.get("aso_epsilon_min"),
                         "replicability": rep.get("count"), "replicability_of": rep.get("n"),
                         "n_languages": c["n_languages"], "n_seeds": c["n_seeds"],
                         "min_attainable_p": c["min_attainable_p"]})
    return rows


def analyse_study(params: Params, root: str | Path = "results/runs", out_root: str | Path = "results/stats",
                  n_resamples: int | None = None, seed: int | None = None,
                  metrics_file: str | Path = "results/metrics/stats.json") -> dict:
    study, cfg = study_of(params), params.stats
    n_resamples = cfg.resamples if n_resamples is None else n_resamples
    seed = cfg.seed if seed is None else seed
    name = params.tracking.experiment
    out_dir = Path(out_root) / name
    results = {t: analyse_target(params, t, Path(root), n_resamples, seed) for t in study.targets + study.retrieval
               if (Path(root) / t).is_dir()}
    if not results:
        raise XstiltsError(f"no runs under {root}: run the study (`dvc repro`) before `xstilts stats`")
    for label, cells in _holm_families(results, cfg.family):
        holm = C.adjust([results[t]["arms"][a]["across"]["p_sign_flip"] for t, a in cells], "holm")
        for (t, a), q in zip(cells, holm):
            results[t]["arms"][a]["across"].update(p_adjusted=float(q), adjustment=label)
    claims = claim_rows(results, cfg.alpha)
    per_lang = []
    for t, r in results.items():
        for a, x in r["arms"].items():
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
    write_json(Path(metrics_file), {"study": name, "family": cfg.family, "alpha": cfg.alpha, "claims": {
        f"{c['target']}/{c['arm']}": {k: c[k] for k in ("delta", "ci_low", "ci_high", "p", "p_adjusted")}
        for c in claims}})
    return {"study": name, "out_dir": str(out_dir), "targets": results, "claims": claims, "per_language": per_lang,
            "family": cfg.family, "alpha": cfg.alpha, "resamples": n_resamples, "seed": seed}
