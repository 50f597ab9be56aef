"""One research study as DVC stages: where each stage reads and writes, and what each stage runs.

  models/intermediate/<arm>/seed<s>/            phase 2 (encoder + heads), per arm and seed
  models/target/<target>/<arm>/seed<s>/         phase 3, per target, arm and seed
  results/runs/<target>/<arm>/seed<s>/          zero-shot metrics.json, predictions/, xtreme/
  results/hpo/<phase>/<name>.yaml               tuned learning rate and epochs
  results/study/scores.csv, summary.json/.md    tidy scores of the whole grid (input of the stats stage)
Arm `none` is the baseline: the target phase starts from the base model. Seeds are shared across arms, so every
comparison is paired. Each stage is one parent MLflow run with the phases it ran nested under it.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from .atomic import atomic_dir, atomic_file, write_json
from .config import Params
from .errors import XstiltsError, unknown
from .evaluation.predict import primary

BASE = Path("models/base")


def study_of(params: Params):
    if params.study is None:
        raise XstiltsError("params has no `study` section (arms, targets, seeds): add one to run study stages")
    return params.study


def arm_tasks(params: Params, arm: str) -> list[str]:
    study = study_of(params)
    if arm not in study.arms:
        raise unknown("arm", arm, study.arms)
    return study.arms[arm]


def intermediate_dir(arm: str, seed: int) -> Path:
    return Path("models/intermediate") / arm / f"seed{seed}"


def encoder_for(arm: str, seed: int) -> Path:
    """The encoder a target phase (or retrieval) starts from: the base model for `none`."""
    return BASE if arm == "none" else intermediate_dir(arm, seed) / "encoder"


def target_model_dir(target: str, arm: str, seed: int) -> Path:
    return Path("models/target") / target / arm / f"seed{seed}"


def copy_run(src: str | Path, dst: str | Path) -> None:
    """A deterministic run's results under another seed's folder (replaced atomically)."""
    with atomic_dir(Path(dst)) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)


def run_dir(target: str, arm: str, seed: int, root: str | Path = "results/runs") -> Path:
    return Path(root) / target / arm / f"seed{seed}"


def hpo_file(phase: str, name: str) -> Path:
    return Path("results/hpo") / phase / f"{name}.yaml"


def run_metrics(params: Params, target: str, root: str | Path = "results/runs") -> tuple[dict, list[str]]:
    """A target's finished runs: {(arm, seed): metrics.json} over the study grid, and the missing runs' files."""
    study = study_of(params)
    found, missing = {}, []
    for arm in study.arms:
        for seed in study.seeds:
            f = run_dir(target, arm, seed, root) / "metrics.json"
            if f.is_file():
                found[(arm, seed)] = json.loads(f.read_text())
            else:
                missing.append(str(f))
    return found, missing


def zero_shot_scores(m: dict) -> dict[str, float]:
    """A run's primary test score per language, English excluded (the zero-shot languages)."""
    key = primary(m["metric"])
    return {l: v[key] for l, v in m["splits"].get("test", {}).items() if l != "en"}


def zero_shot_average(m: dict) -> float | None:
    """A run's zero-shot average: the primary test score over the non-English languages."""
    per_lang = zero_shot_scores(m)
    return float(np.mean(list(per_lang.values()))) if per_lang else None


def xtreme_task_score(m: dict) -> float | None:
    """A run's XTREME task score over its non-English test languages, as XTREME computes it (QA: (EM + F1) / 2)."""
    from .evaluation.metrics import task_score

    per_lang = {l: v for l, v in m["splits"].get("test", {}).items() if l != "en"}
    return task_score(m["task"], per_lang) if per_lang else None


def write_target_metrics(params: Params, target: str, root: str | Path = "results/runs",
                         out_dir: str | Path = "results/metrics") -> dict:
    """One target's zero-shot results as DVC metrics: per arm and seed, the average over non-English test languages
    and each language's primary score (`dvc metrics diff` compares them across experiments)."""
    out: dict = {}
    for (arm, seed), m in run_metrics(params, target, root)[0].items():
        out.setdefault(arm, {})[f"seed{seed}"] = {"zero_shot": zero_shot_average(m), **zero_shot_scores(m)}
    write_json(Path(out_dir) / f"{target}.json", {"target": target, "profile": params.profile, "arms": out})
    return out


def collect(params: Params, root: str | Path = "results/runs", out_dir: str | Path = "results/study") -> dict:
    """Tidy scores of every finished run (one row per arm, target, split, language, seed, metric) and a summary
    per arm x target: the zero-shot average (English excluded) as mean and sd over seeds."""
    study = study_of(params)
    rows, missing, runs_of = [], [], {}
    for target in study.targets + study.retrieval:
        runs, lost = run_metrics(params, target, root)
        runs_of[target] = runs
        missing += lost
        for (arm, seed), m in runs.items():
            for split, per_lang in m["splits"].items():
                for lang, vals in per_lang.items():
                    for metric, value in vals.items():
                        if isinstance(value, (int, float)) and metric not in ("n", "tp", "n_pred", "n_gold"):
                            rows.append({"arm": arm, "target": target, "split": split, "language": lang,
                                         "seed": seed, "metric": metric, "value": value,
                                         "primary": metric == primary(m["metric"])})
    out_dir = Path(out_dir)
    with atomic_file(out_dir / "scores.csv") as fh:
        w = csv.DictWriter(fh, fieldnames=["arm", "target", "split", "language", "seed", "metric", "value", "primary"])
        w.writeheader()
        w.writerows(rows)
    summary = {}
    for target in study.targets + study.retrieval:
        for arm in study.arms:
            per_seed = [v for seed in study.seeds if (arm, seed) in runs_of[target]
                        and (v := zero_shot_average(runs_of[target][(arm, seed)])) is not None]
            if per_seed:
                summary.setdefault(target, {})[arm] = {"mean": float(np.mean(per_seed)),
                                                       "sd": float(np.std(per_seed, ddof=1)) if len(per_seed) > 1 else None,
                                                       "n_seeds": len(per_seed)}
    write_json(out_dir / "summary.json", {"zero_shot_average": summary, "missing_runs": missing})
    arms = list(study.arms)
    lines = ["| target | " + " | ".join(arms) + " |", "|---|" + "---|" * len(arms)]
    for target, per_arm in summary.items():
        cells = []
        for a in arms:
            s = per_arm.get(a)
            cells.append("–" if s is None else f"{s['mean']:.1f}" + (f" ± {s['sd']:.1f}" if s["sd"] is not None else ""))
        lines.append(f"| {target} | " + " | ".join(cells) + " |")
    with atomic_file(out_dir / "summary.md") as fh:
        fh.write("Zero-shot average over the test languages (English excluded), mean ± sd over seeds.\n\n")
        fh.write("\n".join(lines) + "\n")
    return {"rows": len(rows), "missing": missing, "summary": summary}

