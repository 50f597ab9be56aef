"""Optuna studies per (phase, task): learning rate (log scale) and epochs, objective on English dev only.

The only package that imports optuna. Seeded TPE (multivariate, constant liar: Optuna 5's defaults), median
pruning on per-epoch English-dev scores, storage resolved to an absolute path (SQLite for sequential search, a
journal file when trials run in parallel: SQLite locks). Each trial is a nested MLflow run; trial folders are
deleted after scoring (only the scores matter). The best values are written to `results/hpo/<phase>/<task>.yaml`,
which training stages read as DVC params, and every trial to `<task>.trials.csv` next to it. Never tuned on
target-language data: the objective is the phase runner's English-dev objective.
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import yaml

from ..atomic import atomic_file
from ..config import TUNABLE, Params, TrainConfig
from ..errors import XstiltsError
from ..training.runner import run_phase


def storage_for(root: str | Path, parallel: bool):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from ..config import store_path

    root = store_path(str(root)).resolve()
    root.mkdir(parents=True, exist_ok=True)
    if parallel:
        return JournalStorage(JournalFileBackend(str(root / "journal.log")))
    return optuna.storages.RDBStorage(f"sqlite:///{root / 'optuna.db'}")


def tune(phase: str, tasks: list, init_dir: str | Path, out_file: str | Path, params: Params,
         work_dir: str | Path, tracker=None, progress: bool = False, arm: str | None = None) -> dict:
    """tasks: names or task references (a study arm's); trials train on exactly those references."""
    import optuna

    from ..training.runner import task_names_of

    refs, tasks = tasks, task_names_of(tasks)
    space = params.active.tuning
    base_cfg = params.active.training.resolve(phase, tasks, arm)
    pinned = params.active.training.pinned(phase, tasks, arm)
    searched = [k for k in TUNABLE if k not in pinned]
    fixed = {k: getattr(base_cfg, k) for k in TUNABLE}  # the recipe's values; a trial overrides the searched ones
    if not space.enabled or not searched:
        result = {"tuned": False, **fixed, **({"pinned": sorted(pinned)} if pinned else {})}
        _write(out_file, result)
        write_trials(trials_file(out_file), [])
        return result
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    key = study_key(phase, refs, init_dir, base_cfg, space, params, searched)
    name = f"{params.tracking.experiment}:{phase}:{'+'.join(tasks)}:{key}"
    study = optuna.create_study(
        study_name=name, storage=storage_for(space.storage_dir, space.n_jobs > 1), direction="maximize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=_sampler_seed(space.seed, phase, tasks),
                                           n_startup_trials=space.n_startup_trials),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=space.prune_startup_trials, n_warmup_steps=0))
    work_dir = Path(work_dir)

    def objective(trial: optuna.Trial) -> float:
        # a value the task's (or arm's) own recipe sets is kept: the researcher fixed it on purpose
        values = dict(fixed)
        if "learning_rate" in searched:
            values["learning_rate"] = trial.suggest_float("learning_rate", *space.learning_rate, log=True)
        if "epochs" in searched:
            values["epochs"] = trial.suggest_int("epochs", *space.epochs)
        cfg = TrainConfig.model_validate({**base_cfg.model_dump(), **values,
                                          "eval_every": 0, "patience": 0, "max_steps": space.max_steps})
        trial_dir = work_dir / f"trial{trial.number}"
        shutil.rmtree(trial_dir, ignore_errors=True)
        epoch_steps = []

        def report(metrics: dict, step: int) -> None:
            obj = metrics.get("dev/objective")
            if run is not None:
                run.metrics(metrics, step)
            if obj is None:
                return
            epoch_steps.append(step)
            trial.report(obj, len(epoch_steps))  # one report per epoch: the median pruner compares epochs
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after epoch {len(epoch_steps)} (English dev {obj:.2f})")

        ctx = tracker.run(f"tune:{phase}:{'+'.join(tasks)}:trial{trial.number}",
                          {"phase": phase, "tasks": "+".join(tasks), "trial": trial.number, "study": name,
                           "profile": params.profile}) if tracker else _null()
        pruned = None
        with ctx as run:
            if run is not None:
                run.params(values)
            try:
                m = run_phase(refs, phase, init_dir, trial_dir, space.seed, params, cfg, progress=progress,
                              log=report, save_weights=False)  # only its dev score counts
            except optuna.TrialPruned as e:  # a pruned trial ended as planned: its MLflow run is not FAILED
                pruned = e
            finally:
                shutil.rmtree(trial_dir, ignore_errors=True)
            if pruned is None and m.get("dev_objective") is None:
                raise XstiltsError(f"tuning {phase}/{'+'.join(tasks)}: no English dev set to score trials on")
            if run is not None:
                run.tags({"state": "PRUNED" if pruned else "COMPLETE"})
        if pruned is not None:
            raise pruned
        return m["dev_objective"]

    remaining = space.n_trials - len([t for t in study.trials if t.state.is_finished()])
    if remaining > 0:
        study.optimize(objective, n_trials=remaining, n_jobs=space.n_jobs, catch=())
    states = [t.state.name for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise XstiltsError(f"study {name!r}: no trial completed ({states.count('PRUNED')} pruned)")
    best = study.best_trial
    # 6 significant digits: DVC re-serialises params floats and drops the 17th digit, so a full-precision value
    # never compares equal in dvc.lock and the training stage would look changed forever
    chosen = {**fixed, **best.params}
    result = {"tuned": True, "learning_rate": float(f"{chosen['learning_rate']:.6g}"), "epochs": chosen["epochs"],
              **({"pinned": sorted(pinned)} if pinned else {}),
              "dev_objective": best.value, "best_trial": best.number, "study": name,
              "n_complete": states.count("COMPLETE"), "n_pruned": states.count("PRUNED")}
    # no storage path in the result: it is a DVC params file of the training stages and is committed, so it must
    # not depend on the machine or folder that ran the search (the store is `tuning.storage_dir`)
    _write(out_file, result)
    write_trials(trials_file(out_file), study.trials)
    return result


def trials_file(out_file: str | Path) -> Path:
    """results/hpo/<phase>/<name>.yaml -> <name>.trials.csv: every trial of the study (a DVC-cached output, not in
    git, so a fresh clone runs the search again and fills its own Optuna store)."""
    return Path(out_file).with_suffix(".trials.csv")


def write_trials(path: Path, trials) -> None:
    """One row per trial: number, state, the searched values, the English-dev objective and its per-epoch values
    (what the median pruner compared)."""
    with atomic_file(path) as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["trial", "state", "learning_rate", "epochs", "dev_objective", "dev_per_epoch"])
        for t in trials:
            per_epoch = ";".join(f"{v:.4f}" for _, v in sorted(t.intermediate_values.items()))
            w.writerow([t.number, t.state.name, t.params.get("learning_rate", ""), t.params.get("epochs", ""),
                        "" if t.value is None else t.value, per_epoch])


def _sampler_seed(seed: int, phase: str, tasks: list[str]) -> int:
    """`tuning.seed` offset by the (phase, tasks) name: reproducible, yet the studies of a grid do not all try the
    same learning rates in their random start-up trials."""
    return (seed + int(hashlib.sha256(f"{phase}:{'+'.join(tasks)}".encode()).hexdigest()[:8], 16)) % 2**32


def study_key(phase, tasks, init_dir, base_cfg: TrainConfig, space, params: Params,
              searched=TUNABLE) -> str:
    """What a study's trials depend on: the recipe without the tuned values, the initial weights, the data and the
    search space. It is part of the study name, so a changed recipe (or a queued experiment with other params)
    starts its own study instead of reusing trials scored under another recipe; a resumed or extended
    (`n_trials`) search continues the same one."""
    from ..training.runner import fingerprint

    # searched values are not part of the identity (a constant stands in); pinned ones are (trials used them)
    cfg = base_cfg.model_copy(update={k: {"learning_rate": 1.0, "epochs": 1}[k] for k in searched})
    fp = fingerprint(tasks, phase, Path(init_dir), space.seed, cfg, params)
    s = json.dumps(space.model_dump(exclude={"enabled", "n_trials", "n_jobs", "storage_dir"}), sort_keys=True)
    return hashlib.sha256((fp + s).encode()).hexdigest()[:8]


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _write(path, result: dict) -> None:
    with atomic_file(path) as fh:
        yaml.safe_dump(result, fh, sort_keys=False)
