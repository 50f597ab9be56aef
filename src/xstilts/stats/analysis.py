"""`xstilts stats`: the study's claims, from its runs (results/runs/<target>/<arm>/seed<s>/).

For every target and every arm against the baseline `none` (same seeds, same test examples: paired):
  claim        the run-level t test over seeds of the language-averaged gain (stats.core.run_level_test: the run
               is the unit that varies), its t CI, Holm over the confirmatory family (params `stats.family`: each
               target's arms, or the whole arm x target grid); calibrated by simulation on the study's shape;
  per language the run-level t per language (a screen: Benjamini-Hochberg over the target's languages, and the
               partial-conjunction replicability count), and the example-level paired bootstrap pooled over seeds,
               labelled conditional on the trained models;
  seeds        ASO ε_min of the arm's seed-level zero-shot averages over the baseline's (descriptive);
  noise        variance components (run, language, residual; the shared-noise share) per arm;
  design       the smallest gain the study can detect at power 0.8 (per target, from the measured run noise), and
               whether the baseline sits too close to chance, 0 or 100 to show a gain at all;
  controls     arms whose training data is the target's own (measured overlap, results/overlap/): same-data
               controls, never transfer gains;
  selection    best intermediate arm per target chosen on English dev, its test gain reported.
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


FLOOR_MARGIN = 5.0  # a baseline within this many points of chance (or 0, or 100) cannot show a gain at this size
POWER = 0.8


def floor_check(target: str, baseline: float | None) -> dict:
    """Can the target show a gain at all? Its baseline zero-shot score against chance (classification: 100 /
    labels), 0 (F1, retrieval) and 100: within `FLOOR_MARGIN` points of either bound the target phase learned
    (next to) nothing or has no room left, and a gain there is not evidence of transfer."""
    from ..tasks.registry import get_task

    spec = get_task(target)
    chance = 100.0 / len(spec.labels) if spec.format == "classification" and spec.labels else 0.0
    out = {"baseline": baseline, "chance": chance, "margin": FLOOR_MARGIN, "cannot_show_gain": False, "why": None}
    if baseline is None:
        return out
    if baseline < chance + FLOOR_MARGIN:
        what = f"chance ({chance:.1f})" if chance else "0"
        out.update(cannot_show_gain=True, why=f"baseline {baseline:.1f} is within {FLOOR_MARGIN:.0f} points of {what}")
    elif baseline > 100.0 - FLOOR_MARGIN:
        out.update(cannot_show_gain=True, why=f"baseline {baseline:.1f} is within {FLOOR_MARGIN:.0f} points of 100")
    return out


def design_power(arms: dict, alpha: float, n_family: int) -> dict:
    """The smallest gain this study's size can detect at power 0.8: from the per-seed gains of every arm, pooled
    (variance of the per-seed language-averaged gain, df = sum of S - 1), at alpha and at Holm's first step
    (alpha / family size: what the best arm of the family must pass)."""
    per_seed = [np.asarray(x["claim"]["per_seed"]) for x in arms.values() if len(x["claim"]["per_seed"]) >= 2]
    if not per_seed:
        return {"gain_sd": None, "why": "fewer than 2 seeds: no estimate of run-to-run noise"}
    df = sum(len(p) - 1 for p in per_seed)
    sd = float(np.sqrt(sum(((p - p.mean()) ** 2).sum() for p in per_seed) / df))
    n_seeds = int(np.median([len(p) for p in per_seed]))
    return {"gain_sd": sd, "df": df, "n_seeds": n_seeds, "power": POWER, "alpha": alpha, "family_size": n_family,
            "mde": C.detectable_effect(sd, n_seeds, alpha, POWER),
            "mde_holm": C.detectable_effect(sd, n_seeds, alpha / max(1, n_family), POWER),
            "seeds_for": {str(d): _seeds_for(d, sd, alpha / max(1, n_family)) for d in (1, 2, 3, 5)}}


def _seeds_for(delta: float, sd: float, alpha: float, most: int = 200) -> int | None:
    """Seeds needed for power 0.8 at a true gain `delta` (None above `most`)."""
    for s in range(C.MIN_SEEDS, most + 1):
        if C.power_t(delta, sd, s, alpha) >= POWER:
            return s
    return None


def analyse_target(params: Params, target: str, root: Path, n_resamples: int, seed: int,
                   controls: dict | None = None) -> dict:
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
    arms = [a for a in study.arms if a != BASELINE
            and any((a, s) in metrics and (BASELINE, s) in metrics for s in seeds)]

    def matrix(a, ss, ls):  # (seeds, languages) scores
        return np.array([[score(a, s, l) for l in ls] for s in ss], float)

    base_seeds = [s for s in seeds if (BASELINE, s) in metrics]
    base_langs = [l for l in langs if all(score(BASELINE, s, l) is not None for s in base_seeds)]
    base_scores = matrix(BASELINE, base_seeds, base_langs)
    baseline = float(base_scores.mean()) if base_scores.size else None
    out["baseline"] = {"zero_shot": baseline, "dev": dev[BASELINE], "n_seeds": len(base_seeds),
                       "variance": C.variance_components(base_scores) if base_scores.size else None}
    out["floor"] = floor_check(target, baseline)
    # conditional, per language: one example-level resample shared by every arm and seed with that language
    conditional: dict[str, dict] = {a: {} for a in arms}
    for lang in langs:
        for paired, group in _seed_groups(arms, seeds, metrics).items():
            pb = [pieces(BASELINE, s, lang) for s in paired]
            pa = {a: [pieces(a, s, lang) for s in paired] for a in group}
            pa = {a: x for a, x in pa.items() if not any(p is None for p in x)}
            if not pa or any(p is None for p in pb):
                continue
            B, A = _aligned(pb, pa)
            for a, t in C.paired_bootstrap_arms(B, A, n_resamples, seed).items():
                conditional[a][lang] = {**t.as_dict(), "test": "example-level paired bootstrap pooled over seeds "
                                        "(conditional on the trained models)"}
    for arm in arms:
        paired = [s for s in seeds if (arm, s) in metrics and (BASELINE, s) in metrics]
        g_langs = [l for l in langs if all(score(arm, s, l) is not None and score(BASELINE, s, l) is not None
                                           for s in paired)]
        if not g_langs:
            continue
        gains = (matrix(arm, paired, g_langs) - matrix(BASELINE, paired, g_langs)).T  # (languages, seeds)
        res: dict = {"n_seeds": len(paired), "claim": C.run_level_test(gains)}
        per_lang = {}
        for lang, r in zip(g_langs, C.per_language_run_tests(gains)):
            per_lang[lang] = {**r, "conditional": conditional[arm].get(lang)}
        tested = {l: v for l, v in per_lang.items() if v["p"] is not None}
        if tested:
            for v, q in zip(tested.values(), C.adjust([v["p"] for v in tested.values()], "fdr_bh")):
                v["p_adjusted"], v["adjustment"] = float(q), "fdr_bh over the target's languages (screen)"
            res["replicability"] = C.partial_conjunction([v["p_one_sided"] for v in tested.values()],
                                                         alpha=params.stats.alpha, method="bonferroni")
        res["per_language"] = per_lang
        zs = [float(np.mean([score(a, s, l) for l in g_langs])) for a in (arm, BASELINE) for s in paired]
        res["seed_scores"] = {"arm": zs[:len(paired)], "baseline": zs[len(paired):]}
        res["aso_epsilon_min"] = (C.aso_epsilon(zs[:len(paired)], zs[len(paired):], seed=seed)
                                  if len(paired) >= 2 else None)
        res["variance"] = C.variance_components(matrix(arm, paired, g_langs))
        res["dev"] = dev[arm]
        res["control"] = (controls or {}).get(arm)
        out["arms"][arm] = res
    out["baseline_dev"] = dev[BASELINE]
    family = len(out["arms"]) if params.stats.family == "target" else None
    out["design"] = design_power(out["arms"], params.stats.alpha, family or len(out["arms"]))
    # a same-data control is never "the best intermediate task": it repeats the target's own training data
    controls = [a for a, r in out["arms"].items() if r.get("control")]
    out["selection"] = C.select_on_dev({a: d for a, d in dev.items() if d is not None and a not in controls},
                                       {a: r["claim"] for a, r in out["arms"].items() if a not in controls})
    out["selection"]["controls_excluded"] = controls
    return out


def _holm_families(results: dict, family: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The confirmatory families of claims with a p: per target (its arms) or the whole arm x target grid."""
    cells = [(t, a) for t, r in results.items() for a, x in r["arms"].items() if x["claim"]["p"] is not None]
    if family == "study":
        return [(f"holm over the study's {len(cells)} arm x target tests", cells)]
    return [(f"holm over {t}'s {sum(1 for c in cells if c[0] == t)} arms", [c for c in cells if c[0] == t])
            for t in results]


def claim_rows(results: dict[str, dict], alpha: float) -> list[dict]:
    """One row per arm x target: the claims table of claims.csv and the report. `results` are `analyse_target`'s
    outputs after Holm (or the `results/stats/<study>/<target>.json` files). A row is `significant` only when its
    test is calibrated (a p exists), it survives Holm, the target can show a gain at all, and the arm is not a
    same-data control."""
    rows = []
    for t, r in results.items():
        floor = r.get("floor") or {}
        design = r.get("design") or {}
        for a, x in r["arms"].items():
            c = x["claim"]
            rep = x.get("replicability") or {}
            control = (x.get("control") or {}).get("label")
            p_adj = c.get("p_adjusted")
            rows.append({"target": t, "arm": a, "delta": c["delta"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                         "test": c["test"], "p": c["p"], "p_adjusted": p_adj, "adjustment": c.get("adjustment"),
                         "significant": bool(p_adj is not None and p_adj <= alpha),
                         "transfer_claim": bool(p_adj is not None and p_adj <= alpha and not control
                                                and not floor.get("cannot_show_gain")),
                         "control": control, "cannot_show_gain": bool(floor.get("cannot_show_gain")),
                         "why_no_p": c.get("why"), "p_permutation": c.get("p_permutation"),
                         "aso_epsilon_min": x.get("aso_epsilon_min"),
                         "replicability": rep.get("count"), "replicability_of": rep.get("n"),
                         "n_languages": c["n_languages"], "n_seeds": c["n_seeds"], "mde_holm": design.get("mde_holm")})
    return rows


def load_controls(path: str | Path | None) -> dict[str, dict]:
    """{target: {arm: control}} from the overlap stage's file (results/overlap/<study>.json); {} without one."""
    if path is None or not Path(path).is_file():
        return {}
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return data.get("controls", {})


def analyse_study(params: Params, root: str | Path = "results/runs", out_root: str | Path = "results/stats",
                  n_resamples: int | None = None, seed: int | None = None,
                  metrics_file: str | Path = "results/metrics/stats.json",
                  overlap_file: str | Path | None = None) -> dict:
    study, cfg = study_of(params), params.stats
    n_resamples = cfg.resamples if n_resamples is None else n_resamples
    seed = cfg.seed if seed is None else seed
    name = params.tracking.experiment
    out_dir = Path(out_root) / name
    controls = load_controls(overlap_file)
    results = {t: analyse_target(params, t, Path(root), n_resamples, seed, controls.get(t))
               for t in study.targets + study.retrieval if (Path(root) / t).is_dir()}
    if not results:
        raise XstiltsError(f"no runs under {root}: run the study (`dvc repro`) before `xstilts stats`")
    families = _holm_families(results, cfg.family)
    for label, cells in families:
        holm = C.adjust([results[t]["arms"][a]["claim"]["p"] for t, a in cells], "holm")
        for (t, a), q in zip(cells, holm):
            results[t]["arms"][a]["claim"].update(p_adjusted=float(q), adjustment=label)
    if cfg.family == "study":  # the detectable effect at Holm's first step over the whole grid
        size = sum(len(c) for _, c in families)
        for r in results.values():
            r["design"] = design_power(r["arms"], cfg.alpha, size)
    claims = claim_rows(results, cfg.alpha)
    per_lang = []
    for t, r in results.items():
        for a, x in r["arms"].items():
            for lang, v in x["per_language"].items():
                cond = v.get("conditional") or {}
                per_lang.append({"target": t, "arm": a, "language": lang, "delta": v["delta"], "ci_low": v["ci_low"],
                                 "ci_high": v["ci_high"], "p": v["p"], "p_adjusted": v.get("p_adjusted"),
                                 "adjustment": "fdr_bh (screen)", "test": v["test"], "n_seeds": v["n_seeds"],
                                 "conditional_ci_low": cond.get("ci_low"), "conditional_ci_high": cond.get("ci_high"),
                                 "conditional_p": cond.get("p"), "n_examples": cond.get("n_examples")})
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
