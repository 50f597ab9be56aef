"""Optuna per (phase, task) on the smoke profile: seeded, English-dev objective, pruning, nested MLflow trials,
and the best values flowing into training through the result file."""

import csv
import json

import optuna
import pytest
import yaml

from xstilts.cli import _apply_hpo
from xstilts.config import TuningConfig
from xstilts.errors import XstiltsError
from xstilts.tracking import Tracker, read_runs
from xstilts.tuning import tune

pytestmark = pytest.mark.slow


def _params(smoke_env, **tuning):
    params, base = smoke_env
    prof = params.active.model_copy(update={"tuning": params.active.tuning.model_copy(update=tuning)})
    return params.model_copy(update={"profiles": {**params.profiles, params.profile: prof}}), base


def test_study_finds_values_and_writes_them(smoke_env, tmp_path):
    params, base = _params(smoke_env, n_trials=5, epochs=(1, 3), learning_rate=(1e-4, 3e-3), n_startup_trials=2,
                           prune_startup_trials=1, storage_dir=str(tmp_path / "optuna"))
    tracker = Tracker(tmp_path / "mlruns", "tune-test")
    out = tmp_path / "hpo/target/panx.yaml"
    r = tune("target", ["panx"], base, out, params, tmp_path / "work", tracker=tracker)
    assert r["tuned"] and r["n_complete"] + r["n_pruned"] == 5 and r["n_complete"] >= 1
    assert 1e-4 <= r["learning_rate"] <= 3e-3 and 1 <= r["epochs"] <= 3
    assert yaml.safe_load(out.read_text()) == r
    rows = list(csv.DictReader((tmp_path / "hpo/target/panx.trials.csv").open()))  # every trial, as a table
    assert [x["trial"] for x in rows] == ["0", "1", "2", "3", "4"]
    assert sorted(x["state"] for x in rows) == sorted(["COMPLETE"] * r["n_complete"] + ["PRUNED"] * r["n_pruned"])
    best = rows[r["best_trial"]]
    assert float(best["dev_objective"]) == pytest.approx(r["dev_objective"]) and int(best["epochs"]) == r["epochs"]
    assert len(best["dev_per_epoch"].split(";")) == r["epochs"]
    assert not list((tmp_path / "work").glob("trial*"))  # trial folders (weights) are removed
    study = optuna.load_study(study_name=r["study"], storage=f"sqlite:///{tmp_path / 'optuna/optuna.db'}")
    assert study.best_value == pytest.approx(r["dev_objective"])
    runs = [x for x in read_runs(tmp_path / "mlruns", "tune-test") if x["name"].startswith("tune:target:panx")]
    assert len(runs) == 5 and {x["tags"]["state"] for x in runs} <= {"COMPLETE", "PRUNED"}
    assert all(x["status"] == "FINISHED" for x in runs)  # pruned trials are not failures
    # the same study again is a no-op (it already has its trials) and gives the same answer
    assert tune("target", ["panx"], base, out, params, tmp_path / "work") == r
    cfg = _apply_hpo(params.active.training.resolve("target", ["panx"]), out)
    assert (cfg.learning_rate, cfg.epochs) == (r["learning_rate"], r["epochs"])
    # a changed recipe is a new study (trials scored under the old recipe are not reused); more trials extend one
    p2 = _with_task_recipe(params, "panx", max_length=48)
    r2 = tune("target", ["panx"], base, tmp_path / "p2.yaml", p2, tmp_path / "work")
    assert r2["study"] != r["study"] and r2["n_complete"] + r2["n_pruned"] == 5
    more, _ = _params((params, base), n_trials=6)
    assert tune("target", ["panx"], base, tmp_path / "p3.yaml", more, tmp_path / "work")["study"] == r["study"]
    assert len(optuna.load_study(study_name=r["study"], storage=f"sqlite:///{tmp_path / 'optuna/optuna.db'}").trials) == 6


def test_same_seed_same_trials(smoke_env, tmp_path):
    a, base = _params(smoke_env, n_trials=3, storage_dir=str(tmp_path / "a"), prune_startup_trials=5)
    b, _ = _params(smoke_env, n_trials=3, storage_dir=str(tmp_path / "b"), prune_startup_trials=5)
    ra = tune("target", ["xnli"], base, tmp_path / "a.yaml", a, tmp_path / "wa")
    rb = tune("target", ["xnli"], base, tmp_path / "b.yaml", b, tmp_path / "wb")
    assert (ra["learning_rate"], ra["epochs"], ra["dev_objective"]) == (rb["learning_rate"], rb["epochs"], rb["dev_objective"])


def test_parallel_trials_use_a_journal_file(smoke_env, tmp_path):
    params, base = _params(smoke_env, n_trials=2, n_jobs=2, storage_dir=str(tmp_path / "optuna"))
    r = tune("target", ["sick"], base, tmp_path / "sick.yaml", params, tmp_path / "w")
    assert (tmp_path / "optuna/journal.log").is_file() and r["n_complete"] + r["n_pruned"] == 2


def test_tuning_off_writes_the_fixed_values(smoke_env, tmp_path):
    params, base = _params(smoke_env, enabled=False)
    r = tune("target", ["panx"], base, tmp_path / "p.yaml", params, tmp_path / "w")
    fixed = params.active.training.resolve("target", ["panx"])
    assert r == {"tuned": False, "learning_rate": fixed.learning_rate, "epochs": fixed.epochs}
    assert (tmp_path / "p.trials.csv").read_text().splitlines() == [
        "trial,state,learning_rate,epochs,dev_objective,dev_per_epoch"]


def _with_task_recipe(params, task, **recipe):
    tr = params.active.training
    edited = tr.model_copy(update={"tasks": {**tr.tasks, task: {**tr.tasks.get(task, {}), **recipe}}})
    return params.model_copy(update={"profiles": {**params.profiles, params.profile: params.active.model_copy(
        update={"training": edited})}})


def test_a_learning_rate_set_in_the_task_recipe_is_kept_and_only_epochs_are_searched(smoke_env, tmp_path):
    params, base = _params(smoke_env, n_trials=3, epochs=(1, 3), learning_rate=(1e-4, 3e-3), n_startup_trials=1,
                           prune_startup_trials=5, storage_dir=str(tmp_path / "optuna"))
    free = tune("target", ["panx"], base, tmp_path / "free.yaml", params, tmp_path / "w")
    pinned = _with_task_recipe(params, "panx", learning_rate=7e-4)
    r = tune("target", ["panx"], base, tmp_path / "pin.yaml", pinned, tmp_path / "w")
    assert r["tuned"] and r["learning_rate"] == 7e-4 and r["pinned"] == ["learning_rate"] and 1 <= r["epochs"] <= 3
    study = optuna.load_study(study_name=r["study"], storage=f"sqlite:///{tmp_path / 'optuna/optuna.db'}")
    assert r["study"] != free["study"] and all(set(t.params) == {"epochs"} for t in study.trials)
    cfg = _apply_hpo(pinned.active.training.resolve("target", ["panx"]), tmp_path / "pin.yaml")
    assert cfg.learning_rate == 7e-4
    # both fixed: nothing to search, the recipe's values are written as they are
    both = tune("target", ["panx"], base, tmp_path / "both.yaml", _with_task_recipe(pinned, "panx", epochs=2),
                tmp_path / "w")
    assert both == {"tuned": False, "learning_rate": 7e-4, "epochs": 2, "pinned": ["epochs", "learning_rate"]}


def test_bad_ranges_and_missing_result_file(tmp_path):
    with pytest.raises(ValueError, match="learning_rate range must be 0 < low <= high"):
        TuningConfig(learning_rate=(1e-3, 1e-5))
    with pytest.raises(XstiltsError, match="tuning result .* not found"):
        _apply_hpo(None, tmp_path / "nope.yaml")
