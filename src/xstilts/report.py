"""`xstilts report`: the study as a page a researcher reads at a glance (reports/<study>/README.md + figures).

Inputs are the stats stage's tables (results/stats/<study>/<target>.json) and the runs' metrics; nothing is
recomputed here except the XTREME-style summary (zero-shot averages per seed). Figures: a heatmap of gains
(arm x target) marked by significance after the named correction, a forest plot per target (per-language gains with
bootstrap CIs, and the across-language CI), and the seed distributions per arm. `plots/*.csv` feed `dvc plots`.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from .atomic import atomic_dir, atomic_file
from .config import Params
from .errors import XstiltsError
from .stats.analysis import claim_rows
from .study import run_metrics, study_of, zero_shot_average
from .tasks.registry import get_task

BASELINE = "none"
FLOOR = 15.0  # a baseline zero-shot average below this (F1/accuracy points) is near the floor: gains mean little
CHANCE_MARGIN = 5.0  # classification: a baseline within this many points of chance (100 / labels) learned ~nothing


def _floor(target: str) -> float:
    spec = get_task(target)
    if spec.format == "classification" and spec.labels:
        return 100.0 / len(spec.labels) + CHANCE_MARGIN
    return FLOOR


def _mark(c: dict, alpha: float) -> str:
    if c.get("p_adjusted") is not None and c["p_adjusted"] <= alpha:
        return "*"
    return "°" if c.get("p") is not None and c["p"] <= alpha else ""


def _fmt(x, nd=1, signed=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def _p(x) -> str:
    return "–" if x is None else (f"{x:.4f}" if x >= 1e-4 else f"{x:.1e}")


def load_stats(params: Params, stats_root: str | Path = "results/stats") -> dict[str, dict]:
    """The stats stage's per-target results, in the study's target order."""
    study = study_of(params)
    d = Path(stats_root) / params.tracking.experiment
    out = {t: json.loads((d / f"{t}.json").read_text()) for t in study.targets + study.retrieval
           if (d / f"{t}.json").is_file()}
    if not out:
        raise XstiltsError(f"no statistics under {d}: run `xstilts stats` (DVC stage `stats`) before the report")
    return out


def seed_averages(params: Params, runs_root: str | Path = "results/runs") -> dict[str, dict[str, dict[int, float]]]:
    """{target: {arm: {seed: zero-shot average over the non-English test languages}}}."""
    study = study_of(params)
    out: dict = {}
    for t in study.targets + study.retrieval:
        for (arm, seed), m in run_metrics(params, t, runs_root)[0].items():
            avg = zero_shot_average(m)
            if avg is not None:
                out.setdefault(t, {}).setdefault(arm, {})[seed] = avg
    return out


def xtreme_table(params: Params, seeds_avg: dict) -> tuple[list[str], list[dict]]:
    """Rows per arm: per target mean ± sd over seeds of the zero-shot average, and the XTREME aggregate (the mean
    over targets, computed per seed, then mean ± sd over seeds; only seeds with every target)."""
    study = study_of(params)
    targets = [t for t in study.targets + study.retrieval if t in seeds_avg]
    rows = []
    for arm in study.arms:
        row: dict = {"arm": arm}
        for t in targets:
            v = list(seeds_avg[t].get(arm, {}).values())
            row[t] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None) if v else None
        full = [s for s in study.seeds if all(s in seeds_avg[t].get(arm, {}) for t in targets)]
        agg = [float(np.mean([seeds_avg[t][arm][s] for t in targets])) for s in full]
        row["aggregate"] = (float(np.mean(agg)), float(np.std(agg, ddof=1)) if len(agg) > 1 else None) if agg else None
        rows.append(row)
    return targets, rows


# ---------------------------------------------------------------- figures

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def heatmap(stats: dict, arms: list[str], alpha: float, path: Path) -> None:
    plt = _plt()
    targets = list(stats)
    d = np.full((len(arms), len(targets)), np.nan)
    for j, t in enumerate(targets):
        for i, a in enumerate(arms):
            c = stats[t]["arms"].get(a, {}).get("across")
            if c:
                d[i, j] = c["delta"]
    lim = max(1.0, float(np.nanmax(np.abs(d)))) if np.isfinite(d).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.1 * len(targets) + 2, 0.6 * len(arms) + 1.8))
    im = ax.imshow(np.ma.masked_invalid(d), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for c in claim_rows(stats, alpha):
        if c["arm"] in arms:
            ax.text(targets.index(c["target"]), arms.index(c["arm"]), f"{c['delta']:+.1f}{_mark(c, alpha)}",
                    ha="center", va="center", fontsize=9, color="black" if abs(c["delta"]) < 0.6 * lim else "white")
    ax.set_xticks(range(len(targets)), targets, rotation=30, ha="right")
    ax.set_yticks(range(len(arms)), arms)
    ax.set_title("Zero-shot gain over `none` (points; * Holm-adjusted p ≤ α, ° raw p ≤ α only)", fontsize=10)
    fig.colorbar(im, ax=ax, label="Δ (mean over languages and seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def forest(target: str, st: dict, arms: list[str], path: Path) -> bool:
    """Per-language gains (example-level bootstrap CI, pooled over seeds) of every arm, plus the across-language
    hierarchical CI on top. False when the target has no per-language intervals (BUCC: a global threshold)."""
    langs = st["languages"]
    if not any(st["arms"].get(a, {}).get("per_language") for a in arms):
        return False
    plt = _plt()
    rows = ["ALL (hier.)"] + langs
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(rows) * max(1, len(arms) / 3) + 1.5))
    width = 0.8 / max(1, len(arms))
    for k, a in enumerate(arms):
        r = st["arms"].get(a, {})
        ys, xs, lo, hi = [], [], [], []
        for i, lang in enumerate(rows):
            c = r.get("across") if i == 0 else r.get("per_language", {}).get(lang)
            if c:
                ys.append(i + (k - (len(arms) - 1) / 2) * width)
                xs.append(c["delta"])
                lo.append(c["delta"] - c["ci_low"])
                hi.append(c["ci_high"] - c["delta"])
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", ms=4, capsize=2, label=a)
    ax.axvline(0, color="grey", lw=1)
    ax.axhline(0.5, color="lightgrey", lw=0.8)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel(f"gain over `none` ({st['primary']} points, 95 % CI)")
    ax.set_title(f"{target}: per-language gains (example-level paired bootstrap, pooled over seeds)", fontsize=10)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def seed_plot(seeds_avg: dict, arms: list[str], path: Path) -> None:
    """One panel per target: each arm's zero-shot average per seed (dots) and their mean (bar)."""
    plt = _plt()
    targets = list(seeds_avg)
    cols = min(3, len(targets))
    nrows = math.ceil(len(targets) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.8 * nrows), squeeze=False)
    for ax, t in zip(axes.flat, targets):
        for i, a in enumerate(arms):
            v = list(seeds_avg[t].get(a, {}).values())
            if v:
                ax.scatter([i] * len(v), v, s=18, color="C0" if a == BASELINE else "C1", zorder=3)
                ax.hlines(np.mean(v), i - 0.3, i + 0.3, color="black", lw=1.5)
        ax.set_xticks(range(len(arms)), arms, rotation=30, fontsize=8)
        ax.set_title(t, fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[len(targets):]:
        ax.axis("off")
    fig.suptitle("Seed distributions: zero-shot average per seed (dots) and mean (line)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------- the page

def headline(params: Params, stats: dict, seeds_avg: dict) -> list[str]:
    """The findings in sentences, derived from the claims (nothing hand-written)."""
    alpha, fam = params.stats.alpha, params.stats.family
    claims = claim_rows(stats, alpha)
    if not claims:
        return ["No arm has a testable comparison with the baseline yet."]
    sig = [c for c in claims if c["p_adjusted"] <= alpha]
    lines = []
    fam_txt = "each target's arms" if fam == "target" else "every arm x target test of the study"
    if sig:
        lines.append(f"{len(sig)} of {len(claims)} arm x target gains are significant after Holm over {fam_txt} "
                     f"(α = {alpha}): " + "; ".join(f"{c['arm']} on {c['target']} Δ {c['delta']:+.2f} "
                                                   f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]" for c in sig) + ".")
    else:
        lines.append(f"None of the {len(claims)} arm x target gains is significant after Holm over {fam_txt} "
                     f"(α = {alpha}).")
    fragile = [c for c in sig if c["ci_low"] <= 0 <= c["ci_high"]]
    if fragile:  # the two analyses answer different questions; say which claims depend on the difference
        lines.append(f"Of these, {len(fragile)} have a hierarchical 95 % CI that includes 0: "
                     + ", ".join(f"{c['arm']}→{c['target']}" for c in fragile) + ". The sign-flip test holds the "
                     "seed-averaged gain of each language fixed (consistent in sign across languages); the CI also "
                     "resamples seeds, so seed-to-seed variance widens it: read them as consistent across languages "
                     "but not established across seeds.")
    raw = [c for c in claims if c["p"] <= alpha and c not in sig]
    if raw:
        lines.append(f"{len(raw)} more reach raw p ≤ {alpha} but not after correction: "
                     + ", ".join(f"{c['arm']}→{c['target']} ({c['delta']:+.2f})" for c in raw) + ".")
    best = max(claims, key=lambda c: c["delta"])
    worst = min(claims, key=lambda c: c["delta"])
    lines.append(f"Largest mean gain: {best['arm']} on {best['target']} ({best['delta']:+.2f} points, 95 % CI "
                 f"[{best['ci_low']:+.2f}, {best['ci_high']:+.2f}], {best['n_languages']} languages x "
                 f"{best['n_seeds']} seeds); largest loss: {worst['arm']} on {worst['target']} ({worst['delta']:+.2f}, "
                 f"[{worst['ci_low']:+.2f}, {worst['ci_high']:+.2f}]).")
    study = study_of(params)
    per_arm = []
    for a in [a for a in study.arms if a != BASELINE]:
        mine = [c for c in claims if c["arm"] == a]
        if mine:
            per_arm.append(f"{a} {sum(c['delta'] > 0 for c in mine)}/{len(mine)}")
    lines.append("Targets with a positive mean gain, per arm: " + ", ".join(per_arm) + ".")
    untestable = sorted({c["target"] for c in claims if c["min_attainable_p"] > alpha})
    if untestable:
        lines.append(f"Not testable across languages at α = {alpha} (too few test languages for the sign-flip "
                     f"test): {', '.join(untestable)}.")
    sel = [(t, st["selection"]) for t, st in stats.items() if st.get("selection", {}).get("chosen_on_dev")]
    if sel:
        lines.append("Best intermediate arm chosen on English dev, then tested: " + "; ".join(
            f"{t}: {s['chosen_on_dev']}" + (f" (test Δ {s['test']['delta']:+.2f})" if s.get("test") else
                                            " (the baseline)") for t, s in sel) + ".")
    return lines


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def write_report(params: Params, out_root: str | Path = "reports", stats_root: str | Path = "results/stats",
                 runs_root: str | Path = "results/runs") -> Path:
    study = study_of(params)
    alpha = params.stats.alpha
    stats = load_stats(params, stats_root)
    seeds_avg = seed_averages(params, runs_root)
    arms = [a for a in study.arms if a != BASELINE]
    out = Path(out_root) / params.tracking.experiment
    forests = []
    with atomic_dir(out / "figures") as fig:
        heatmap(stats, arms, alpha, fig / "gains_heatmap.png")
        for t, st in stats.items():
            if forest(t, st, arms, fig / f"forest_{t}.png"):
                forests.append(t)
        seed_plot({t: seeds_avg[t] for t in stats if t in seeds_avg}, list(study.arms), fig / "seeds.png")
    claims = claim_rows(stats, alpha)
    with atomic_file(out / "plots" / "gains.csv") as fh:
        w = csv.writer(fh)
        w.writerow(["cell", "target", "arm", "delta", "ci_low", "ci_high", "p", "p_adjusted", "significant"])
        for c in claims:
            w.writerow([f"{c['target']}/{c['arm']}", c["target"], c["arm"], round(c["delta"], 4),
                        round(c["ci_low"], 4), round(c["ci_high"], 4), c["p"], c["p_adjusted"], c["significant"]])
    with atomic_file(out / "plots" / "seeds.csv") as fh:
        w = csv.writer(fh)
        w.writerow(["target", "arm", "seed", "zero_shot"])
        for t, per_arm in seeds_avg.items():
            for a, per_seed in per_arm.items():
                for s, v in sorted(per_seed.items()):
                    w.writerow([t, a, s, round(v, 4)])
    with atomic_file(out / "README.md") as fh:
        fh.write(render(params, stats, seeds_avg, claims, forests) + "\n")
    return out


def render(params: Params, stats: dict, seeds_avg: dict, claims: list[dict], forests: list[str]) -> str:
    study = study_of(params)
    alpha, prof = params.stats.alpha, params.active
    L = [f"# Study report: {params.tracking.experiment}", "",
         f"Does an English intermediate task before the target task improve zero-shot cross-lingual transfer? "
         f"Profile `{params.profile}` ({prof.description.strip()}). Arms {', '.join(study.arms)}, "
         f"targets {', '.join(stats)}, seeds {', '.join(map(str, study.seeds))} (shared across arms: every "
         f"comparison is paired). Generated by `xstilts report` from `results/stats/{params.tracking.experiment}/` "
         f"and `results/runs/`.", "", "## Headline findings", ""]
    L += [f"- {x}" for x in headline(params, stats, seeds_avg)]
    L += ["", "## Gains at a glance", "", "![gains heatmap](figures/gains_heatmap.png)", "",
          f"Cell: mean gain over languages and seeds (points of the target's metric). `*`: significant after Holm "
          f"({'per target over its arms' if params.stats.family == 'target' else 'over the whole study'}, "
          f"α = {alpha}); `°`: raw p ≤ α only. Test: paired sign-flip permutation over languages on seed-averaged "
          f"gains; CI: hierarchical bootstrap (languages, then seeds), {params.stats.resamples} resamples.", "",
          "## Claims", ""]
    rows = []
    for c in claims:
        rows.append([c["target"], c["arm"], _fmt(c["delta"], 2, True), f"[{_fmt(c['ci_low'], 2, True)}, "
                     f"{_fmt(c['ci_high'], 2, True)}]", _p(c["p"]), _p(c["p_adjusted"]) + _mark(c, alpha),
                     _p(c.get("p_wilcoxon")), _fmt(c["aso_epsilon_min"], 2),
                     f"{c['replicability']}/{c['replicability_of']}" if c["replicability"] is not None else "–",
                     str(c["n_languages"]), str(c["n_seeds"]), _p(c["min_attainable_p"])])
    L += _md_table(["target", "arm", "Δ", "95 % CI", "p (sign-flip)", "p Holm", "p (Wilcoxon)", "ASO ε_min",
                    "languages with a gain", "languages", "seeds", "min attainable p"], rows)
    L += ["", "ASO ε_min < 0.5: the arm's seed distribution tends to dominate the baseline's (DESIGN 4.7 claims "
          "need < 0.2; with 3 seeds it is a coarse measure). \"Languages with a gain\": partial-conjunction count "
          "(Bonferroni) over the per-language example-level bootstrap tests, one-sided.", ""]
    targets, xrows = xtreme_table(params, seeds_avg)
    L += ["## XTREME-style summary (zero-shot, mean ± sd over seeds)", ""]
    fmt = lambda v: "–" if v is None else f"{v[0]:.1f}" + (f" ± {v[1]:.1f}" if v[1] is not None else "")
    L += _md_table(["arm"] + targets + ["aggregate"], [[r["arm"]] + [fmt(r[t]) for t in targets] + [fmt(r["aggregate"])]
                                                     for r in xrows])
    L += ["", "Per target: the primary metric averaged over the non-English test languages of each seed's run. "
          "Aggregate: the mean over targets per seed (XTREME averages its tasks), then over seeds.", ""]
    mm = [(t, st["mixed_model"]) for t, st in stats.items() if st.get("mixed_model")]
    if mm:
        L += ["## Pooled effect (mixed model `score ~ arm + (1|language) + (1|seed)`)", ""]
        rows = []
        for t, m in mm:
            for a, e in (m.get("effects") or {}).items():
                rows.append([t, a, _fmt(e["delta"], 2, True), f"[{_fmt(e['ci_low'], 2, True)}, "
                             f"{_fmt(e['ci_high'], 2, True)}]", _p(e["p"]), "yes" if m.get("converged") else "**no**"])
        L += _md_table(["target", "arm", "Δ", "95 % CI (Wald)", "p", "converged"], rows) + [""]
    L += ["## Per-language gains", ""]
    for t in forests:
        L += [f"![{t}](figures/forest_{t}.png)", ""]
    L += ["Per-language CIs come from the example-level paired bootstrap pooled over seeds (the corpus metric "
          "recomputed on each resample); `results/stats/.../per_language.csv` has them with Benjamini-Hochberg "
          "adjusted p (a screen, not a claim).", "", "## Seed distributions", "", "![seeds](figures/seeds.png)", "",
          "## Stand-ins (what the offline bundle uses in place of the paper's data)", ""]
    rows = [[t, "target", get_task(t).stand_in or "as XTREME"] for t in stats]
    for a, tasks in study.arms.items():
        for task in tasks:
            rows.append([task, f"intermediate ({a})", get_task(task).stand_in or "–"])
    L += _md_table(["task", "role", "stand-in"], rows)
    L += ["", "## Caveats", ""] + [f"- {c}" for c in caveats(params, stats, seeds_avg)]
    return "\n".join(L)


def caveats(params: Params, stats: dict, seeds_avg: dict) -> list[str]:
    prof, alpha = params.active, params.stats.alpha
    out = [f"Scale: profile `{params.profile}` trains on at most {prof.caps.train} English examples per phase "
           f"(caps per task in params.yaml) with base model `{prof.model.source}`; absolute scores are far below "
           "the paper's and effects of this size are what a small, fast study can show, not the paper's numbers.",
           "Stand-in data (table above) replace several of the paper's intermediate and target datasets; "
           "a gain measured on a stand-in is a gain of that stand-in.",
           f"Holm's family is {'each target' if params.stats.family == 'target' else 'the whole study'} "
           "(params `stats.family`); the per-language tests are a Benjamini-Hochberg screen."]
    few = [f"{t} ({len(st['languages'])})" for t, st in stats.items() if len(st["languages"]) < 5]
    if few:
        out.append(f"Few test languages: {', '.join(few)} — the sign-flip test over n languages cannot go below "
                   f"2/2^n, so these targets cannot show a significant across-language gain at α = {alpha}.")
    floor = [f"{t} ({np.mean(list(per[BASELINE].values())):.1f} vs {_floor(t):.1f})" for t, per in seeds_avg.items()
             if per.get(BASELINE) and np.mean(list(per[BASELINE].values())) < _floor(t)]
    if floor:
        out.append(f"Baseline near chance or the floor (zero-shot average vs chance + {CHANCE_MARGIN:.0f} points for "
                   f"classification, {FLOOR:.0f} F1/accuracy points otherwise): {', '.join(floor)}. The target phase "
                   "learns little from this few English examples, so gains there say little about transfer.")
    nobs = [t for t, st in stats.items() if not any(r.get("per_language") for r in st["arms"].values())]
    if nobs:
        out.append(f"No example-level bootstrap for {', '.join(nobs)} (BUCC's F1 depends on a threshold chosen on "
                   "the whole set): seed- and language-level tests only.")
    bad = [t for t, st in stats.items() if st.get("mixed_model") and not st["mixed_model"].get("converged")]
    if bad:
        out.append(f"The mixed model did not converge for {', '.join(bad)}: read its effects as indicative only.")
    missing = sum(len(st.get("missing_runs", [])) for st in stats.values())
    if missing:
        out.append(f"{missing} runs of the grid are missing (see results/stats/.../<target>.json `missing_runs`).")
    out.append("Zero-shot arms never see target-language data: tuning and model selection use English dev only.")
    return out
