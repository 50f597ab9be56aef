"""One research study as DVC stages: where each stage reads and writes (`Layout`), and what each stage runs.

The root study (params.yaml + dvc.yaml) and every study under pipelines/<name>/ (its params.yaml laid over the
root's, its own dvc.yaml) share one layout, the second under results/<name>/ and models/<name>/:
  models[/<name>]/intermediate/<arm>/seed<s>/        phase 2 (encoder + heads), per arm and seed
  models[/<name>]/target/<target>/<arm>/seed<s>/     phase 3, per target, arm and seed
  results[/<name>]/runs/<target>/<arm>/seed<s>/      zero-shot metrics.json, predictions/, xtreme/
  results/hpo/<phase>/<name>.yaml                    tuned learning rate and epochs (a study's own intermediate
                                                     arms: results/<name>/hpo/)
  results[/<name>]/study/scores.csv, summary.*       tidy scores of the whole grid (input of the stats stage)
Arm `none` is the baseline: the target phase starts from the base model. Seeds are shared across arms, so every
comparison is paired. Each stage is one parent MLflow run with the phases it ran nested under it. A run whose
fingerprint (tasks, recipe, initial weights, seed, prepared data) and evaluation match a finished run of any study
is copied from it, not trained again.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_dir, atomic_file, write_json
from .config import Params
from .errors import XstiltsError, unknown
from .evaluation.predict import primary

BASE = Path("models/base")


@dataclass(frozen=True)
class Layout:
    """Where one study reads and writes. The root study (params.yaml, dvc.yaml) keeps the top-level folders; a
    study under pipelines/<name>/ writes under results/<name>/ and models/<name>/. Data, the base model, prepared
    tasks, target tuning (results/hpo/target/, unless the study tunes its own) and identical runs are shared."""

    name: str | None = None
    experiment: str = "default-study"

    @classmethod
    def of(cls, params: Params) -> "Layout":
        return cls(params.study_name, params.tracking.experiment)

    @property
    def results(self) -> Path:
        return Path("results") if self.name is None else Path("results") / self.name

    @property
    def models(self) -> Path:
        return Path("models") if self.name is None else Path("models") / self.name

    @property
    def runs(self) -> Path:
        return self.results / "runs"

    @property
    def stats_dir(self) -> Path:
        return Path("results/stats") / self.experiment if self.name is None else self.results / "stats"

    @property
    def overlap_file(self) -> Path:
        return Path("results/overlap") / f"{self.experiment}.json" if self.name is None else self.results / "overlap.json"

    @property
    def collect_dir(self) -> Path:
        return self.results / "study"

    @property
    def metrics_dir(self) -> Path:
        return self.results / "metrics"

    @property
    def report_dir(self) -> Path:
        return Path("reports") / self.experiment

    def intermediate_dir(self, arm: str, seed: int) -> Path:
        return self.models / "intermediate" / arm / f"seed{seed}"

    def encoder_for(self, arm: str, seed: int) -> Path:
        """The encoder a target phase (or retrieval) starts from: the base model for `none`."""
        return BASE if arm == "none" else self.intermediate_dir(arm, seed) / "encoder"

    def target_model_dir(self, target: str, arm: str, seed: int) -> Path:
        return self.models / "target" / target / arm / f"seed{seed}"

    def run_dir(self, target: str, arm: str, seed: int) -> Path:
        return run_dir(target, arm, seed, self.runs)

    def hpo_file(self, phase: str, name: str) -> Path:
        """Tuned values: the study's own file when it tuned one, else the shared root file (target recipes)."""
        own = self.results / "hpo" / phase / f"{name}.yaml"
        return own if self.name is None or own.is_file() or phase == "intermediate" else hpo_file(phase, name)


def layout(params: Params) -> Layout:
    return Layout.of(params)


def study_of(params: Params):
    if params.study is None:
        raise XstiltsError("params has no `study` section (arms, targets, seeds): add one to run study stages")
    return params.study


def arm_tasks(params: Params, arm: str) -> list[str]:
    """The task names an arm trains on (`arm_refs` has their split roles, languages and draws)."""
    return [r.task for r in arm_refs(params, arm)]


def arm_refs(params: Params, arm: str):
    """The arm's task references, with a size match (`study.match`) resolved: each reference of a matched arm
    draws the other arm's number of training examples split equally (per language)."""
    from .config import TaskRef

    study = study_of(params)
    if arm not in study.arms:
        raise unknown("arm", arm, study.arms)
    refs = study.refs(arm)
    other = study.match.get(arm)
    if other is None or not refs:
        return refs
    total = sum(_ref_size(params, r) for r in study.refs(other))
    per = max(1, total // len(refs))
    return [TaskRef(**{**r.model_dump(), "k": per}) if r.k is None else r for r in refs]


def _ref_size(params: Params, ref) -> int:
    """Training examples a reference yields: k per language, or the prepared split's size."""
    from .data.prepare import load_meta, load_split

    meta = load_meta(params.data.prepared_dir, ref.task)
    langs = ref.languages or meta["languages"].get(ref.split, [])
    if ref.k is not None:
        return ref.k * len(langs)
    return sum(len(load_split(params.data.prepared_dir, ref.task, ref.split, l)) for l in langs)


def seen_languages(params: Params, arm: str) -> list[str]:
    """Languages other than English an arm's intermediate phase trained on (a German legal task, in-language
    examples): reported apart, never averaged into a zero-shot score. From the prepared data when it is there,
    else from the registry's declared split languages."""
    from .data.prepare import load_meta
    from .tasks.registry import get_task

    study = study_of(params)
    if arm not in study.arms:
        raise unknown("arm", arm, study.arms)
    out: set[str] = set()
    for r in study.refs(arm):
        langs = r.languages
        if langs is None:
            try:
                langs = load_meta(params.data.prepared_dir, r.task)["languages"].get(r.split, [])
            except XstiltsError:
                split = get_task(r.task).local.get(r.split)
                langs = (split.languages if split and split.languages else ["en"]) if r.split == "train" else []
        out |= {l for l in langs if l != "en"}
    return sorted(out)


def copy_run(src: str | Path, dst: str | Path) -> None:
    """A finished run's folder under another name (replaced atomically): files are hard-linked where the file
    system allows (encoders are ~0.5 GB), copied otherwise."""
    def link(s, d):
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    with atomic_dir(Path(dst)) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, copy_function=link)


def run_dir(target: str, arm: str, seed: int, root: str | Path = "results/runs") -> Path:
    return Path(root) / target / arm / f"seed{seed}"


def hpo_file(phase: str, name: str) -> Path:
    return Path("results/hpo") / phase / f"{name}.yaml"


def find_finished(pattern: str, accept) -> Path | None:
    """A finished run of any study whose record `accept`s (same fingerprint, evaluation code, languages): identical
    runs are computed once and shared between studies, never trained again. pattern: a glob under the working
    directory matching run folders (metrics.json or train_metrics.json inside)."""
    import glob

    for d in sorted(glob.glob(pattern, recursive=True)):
        d = Path(d)
        for f in ("metrics.json", "train_metrics.json"):
            if (d / f).is_file():
                try:
                    rec = json.loads((d / f).read_text())
                except (OSError, json.JSONDecodeError):
                    continue
                if accept(rec):
                    return d
                break
    return None


def run_metrics(params: Params, target: str, root: str | Path | None = None) -> tuple[dict, list[str]]:
    """A target's finished runs: {(arm, seed): metrics.json} over the study grid, and the missing runs' files."""
    study = study_of(params)
    root = layout(params).runs if root is None else root
    found, missing = {}, []
    for arm in study.arms:
        for seed in study.seeds:
            f = run_dir(target, arm, seed, root) / "metrics.json"
            if f.is_file():
                found[(arm, seed)] = json.loads(f.read_text())
            else:
                missing.append(str(f))
    return found, missing


def zero_shot_scores(m: dict, seen: list[str] | tuple = ()) -> dict[str, float]:
    """A run's primary test score per language, English and the languages its arm trained on (`seen`) excluded:
    the zero-shot languages."""
    key = primary(m["metric"])
    return {l: v[key] for l, v in m["splits"].get("test", {}).items() if l != "en" and l not in seen}


def zero_shot_average(m: dict, seen: list[str] | tuple = ()) -> float | None:
    """A run's zero-shot average: the primary test score over the non-English languages it never trained on."""
    per_lang = zero_shot_scores(m, seen)
    return float(np.mean(list(per_lang.values()))) if per_lang else None


def xtreme_task_score(m: dict) -> float | None:
    """A run's XTREME task score over its non-English test languages, as XTREME computes it (QA: (EM + F1) / 2)."""
    from .evaluation.metrics import task_score

    per_lang = {l: v for l, v in m["splits"].get("test", {}).items() if l != "en"}
    return task_score(m["task"], per_lang) if per_lang else None


def write_target_metrics(params: Params, target: str, root: str | Path | None = None,
                         out_dir: str | Path | None = None) -> dict:
    """One target's zero-shot results as DVC metrics: per arm and seed, the average over non-English test languages
    and each language's primary score (`dvc metrics diff` compares them across experiments)."""
    out: dict = {}
    out_dir = layout(params).metrics_dir if out_dir is None else out_dir
    for (arm, seed), m in run_metrics(params, target, root)[0].items():
        out.setdefault(arm, {})[f"seed{seed}"] = {"zero_shot": zero_shot_average(m), **zero_shot_scores(m)}
    write_json(Path(out_dir) / f"{target}.json", {"target": target, "profile": params.profile, "arms": out})
    return out


def collect(params: Params, root: str | Path | None = None, out_dir: str | Path | None = None) -> dict:
    """Tidy scores of every finished run (one row per arm, target, split, language, seed, metric) and a summary
    per arm x target: the zero-shot average (English excluded) as mean and sd over seeds."""
    study = study_of(params)
    out_dir = layout(params).collect_dir if out_dir is None else out_dir
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
    seen = {arm: seen_languages(params, arm) for arm in study.arms}
    for target in study.targets + study.retrieval:
        for arm in study.arms:
            per_seed = [v for seed in study.seeds if (arm, seed) in runs_of[target]
                        and (v := zero_shot_average(runs_of[target][(arm, seed)], seen[arm])) is not None]
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


def list_studies(params_file: str | Path = "params.yaml") -> list[dict]:
    """Every study of the project: the root study and each pipelines/<name>/ folder, with its question, arms,
    status (runs found of the grid, statistics, report) and headline answer (the first declared contrast that is
    significant, else the first transfer claim, else what the statistics found)."""
    from .config import load_params
    from .errors import ConfigError

    out = []
    names = [None] + sorted(d.name for d in Path("pipelines").glob("*") if (d / "params.yaml").is_file())
    for name in names:
        row: dict = {"study": name or "(root)", "folder": f"pipelines/{name}" if name else "."}
        try:
            params = load_params(params_file, study=name)
        except ConfigError as e:
            out.append({**row, "status": f"invalid params: {e}".splitlines()[0]})
            continue
        study, L = study_of(params), layout(params)
        grid = [(t, a, s) for t in study.targets + study.retrieval for a in study.arms for s in study.seeds]
        done = sum((L.run_dir(t, a, s) / "metrics.json").is_file() for t, a, s in grid)
        stats = L.stats_dir / "claims.csv"
        report = L.report_dir / "README.md"
        status = f"{done}/{len(grid)} runs" + (", stats" if stats.is_file() else "") + (
            ", report" if report.is_file() else "")
        row.update(experiment=params.tracking.experiment, question=" ".join(study.question.split()),
                   arms=[a for a in study.arms], targets=study.targets + study.retrieval, seeds=len(study.seeds),
                   status=status, answer=_headline_answer(L))
        out.append(row)
    return out


def _headline_answer(L: Layout) -> str:
    contrasts = L.stats_dir / "contrasts.json"
    if contrasts.is_file():
        rows = [c for c in json.loads(contrasts.read_text()) if c.get("p") is not None]
        sig = [c for c in rows if c.get("significant")]
        c = (sig or rows or [None])[0]
        if c:
            return (f"{c['contrast']} on {c['target']}: Δ {c['delta']:+.2f} [{c['ci_low']:+.2f}, {c['ci_high']:+.2f}], "
                    f"Holm p {c['p_adjusted']:.3g}" + ("" if sig else " (nothing significant)"))
    claims = L.stats_dir / "claims.csv"
    if claims.is_file():
        rows = list(csv.DictReader(open(claims, encoding="utf-8")))
        sig = [r for r in rows if r.get("transfer_claim") == "True"]
        if sig:
            return "; ".join(f"{r['arm']}→{r['target']} Δ {float(r['delta']):+.2f}" for r in sig)
        return f"no significant transfer effect among {len(rows)} arm x target comparisons"
    return "not run yet"
