"""MLflow tracking: the only package that imports mlflow.

Store: `sqlite:///<absolute>/mlruns/mlflow.db` with artifacts under `<absolute>/mlruns/artifacts` (MLflow 3.x
refuses a plain file store; absolute paths keep queued DVC experiments, which run in temporary copies, logging
to the workspace's store). One experiment per study; runs nest (stage -> phase / evaluation). Weights are never
logged. A run that raises is marked FAILED with the error; a run killed outright is resumed (same run id) when
its command is re-run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path
from typing import Iterator

RUN_ID_FILE = "mlflow_run_id"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")


def store_uri(root: str | Path) -> str:
    return f"sqlite:///{Path(root).resolve() / 'mlflow.db'}"


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def dvc_experiment() -> dict:
    """Inside `dvc exp run` (also queued): the experiment's name and baseline commit, as DVC exports them."""
    env = {"dvc_experiment": "DVC_EXP_NAME", "dvc_baseline_rev": "DVC_EXP_BASELINE_REV"}
    return {k: os.environ[v] for k, v in env.items() if os.environ.get(v)}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


class Run:
    """A thin handle on the active MLflow run (so callers never import mlflow)."""

    def __init__(self, mlflow, run_id: str):
        self._mlflow, self.run_id = mlflow, run_id

    def params(self, params: dict) -> None:
        flat = {k: ("" if v is None else str(v))[:6000] for k, v in flatten(params).items()}
        items = list(flat.items())
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self._mlflow.log_params(dict(items[i:i + 100]))

    def metrics(self, metrics: dict, step: int | None = None) -> None:
        flat = {k: float(v) for k, v in flatten(metrics).items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v}
        if flat:
            self._mlflow.log_metrics(flat, step=step)

    def tags(self, tags: dict) -> None:
        self._mlflow.set_tags({k: str(v) for k, v in tags.items() if v is not None})

    def artifact(self, path: str | Path, folder: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and p.suffix not in WEIGHT_SUFFIXES:
                    rel = p.parent.relative_to(path).as_posix()
                    sub = "/".join(x for x in (folder, path.name, rel if rel != "." else None) if x)
                    self._mlflow.log_artifact(str(p), sub)
        elif path.is_file():
            if path.suffix in WEIGHT_SUFFIXES:
                raise ValueError(f"refusing to log weights to MLflow: {path}")
            self._mlflow.log_artifact(str(path), folder)

    def table(self, name: str, rows: list[dict]) -> None:
        self._mlflow.log_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", name)


class Tracker:
    def __init__(self, root: str | Path = "mlruns", experiment: str = "xstilts", enabled: bool = True):
        self.root, self.experiment, self.enabled = Path(root).resolve(), experiment, enabled

    def _experiment_id(self, mlflow) -> str:
        from mlflow.tracking import MlflowClient

        mlflow.set_tracking_uri(store_uri(self.root))
        client = MlflowClient()
        exp = client.get_experiment_by_name(self.experiment)
        if exp is not None:
            return exp.experiment_id
        return client.create_experiment(self.experiment,
                                        artifact_location=(self.root / "artifacts" / self.experiment).as_uri())

    @contextlib.contextmanager
    def run(self, name: str, tags: dict | None = None, resume_file: str | Path | None = None,
            nested: bool = True) -> Iterator[Run | None]:
        """A (nested) run; with `resume_file`, a re-run of a killed command continues the same MLflow run."""
        if not self.enabled:
            yield None
            return
        self.root.mkdir(parents=True, exist_ok=True)
        import mlflow

        exp = self._experiment_id(mlflow)
        run_id = None
        if resume_file is not None and Path(resume_file).is_file():
            run_id = Path(resume_file).read_text().strip() or None
        parent = os.environ.get("XSTILTS_PARENT_RUN_ID")
        run_tags = {"git_commit": git_commit(), **dvc_experiment(), **(tags or {})}
        if parent and mlflow.active_run() is None:
            run_tags["mlflow.parentRunId"] = parent
        with mlflow.start_run(run_id=run_id, experiment_id=None if run_id else exp, run_name=name[:250],
                              nested=nested and mlflow.active_run() is not None) as active:
            if resume_file is not None:
                Path(resume_file).parent.mkdir(parents=True, exist_ok=True)
                Path(resume_file).write_text(active.info.run_id)
            handle = Run(mlflow, active.info.run_id)
            handle.tags(run_tags)
            try:
                yield handle
            except BaseException as e:
                mlflow.set_tag("error", f"{type(e).__name__}: {e}"[:5000])
                raise


def read_runs(root: str | Path, experiment: str) -> list[dict]:
    """Runs of an experiment as plain dicts (for tests, reports and the stats stage)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(store_uri(Path(root).resolve()))
    client = MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return [{"run_id": r.info.run_id, "name": r.info.run_name, "status": r.info.status, "tags": r.data.tags,
             "params": r.data.params, "metrics": r.data.metrics, "artifact_uri": r.info.artifact_uri}
            for r in client.search_runs([exp.experiment_id], max_results=10000)]
