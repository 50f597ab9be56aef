"""`dvc repro` of the real dvc.yaml on the smoke profile, in a scratch git repository.

Runs the whole study for real on a small grid (base model, prepare, Optuna tuning, intermediate phases, targets,
retrieval, collect), then checks that a second repro does nothing, that an inactive profile's edit re-runs
nothing, that one target's recipe re-runs exactly that target's branch, and that runs reach MLflow.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow


def run(cmd, cwd, env):
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, data_root):
    work = tmp_path_factory.mktemp("dvc") / "repo"
    work.mkdir()
    for f in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / f, work / f)
    shutil.copytree(REPO / ".dvc", work / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["tasks"] = ["xnli", "panx", "bucc2018", "tatoeba", "sick", "ud_ewt_upos"]
    # the `data` stage unpacks the shared bundle inside the scratch repository (a DVC output)
    params["data"].update(bundle=str((REPO / params["data"]["bundle"]).resolve()), root="data/raw/xtreme-mini")
    params["study"] = {"seeds": [1, 2], "arms": {"none": [], "nli": ["sick"], "syntax": ["ud_ewt_upos"]},
                       "intermediate_arms": ["nli", "syntax"], "targets": ["xnli", "panx"], "retrieval": ["tatoeba"],
                       "keep_target_models": False}
    for prof in params["profiles"].values():
        prof["training"]["arms"] = {"nli": {}, "syntax": {}}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "init", "-q"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "scratch"], work, env)
    out = run([sys.executable, "-m", "dvc", "repro"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "first repro"], work, env)
    return work, env, out


def test_repro_builds_model_and_prepared_data(scratch):
    work, env, out = scratch
    assert "Running stage 'model'" in out and "Running stage 'prepare@panx'" in out
    for stage in ("tune_target@xnli", "tune_intermediate@syntax", "intermediate@nli", "target@panx", "target@xnli",
                  "retrieval@tatoeba", "collect", "stats", "report"):
        assert f"Running stage '{stage}'" in out
    assert (work / "models/base/config.json").is_file()
    counts = json.loads((work / "results/data/panx.json").read_text())
    assert counts["profile"] == "smoke" and counts["splits"]["test"]["de"] == {"source": 2000, "prepared": 16}
    metrics = run([sys.executable, "-m", "dvc", "metrics", "show", "--json"], work, env)
    assert "prepared" in metrics


def test_second_repro_is_up_to_date_and_params_are_granular(scratch):
    work, env, _ = scratch
    assert "Data and pipelines are up to date" in run([sys.executable, "-m", "dvc", "status"], work, env)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["profiles"]["mini"]["caps"]["train"] = 7  # inactive profile: nothing to redo
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "Data and pipelines are up to date" in run([sys.executable, "-m", "dvc", "status"], work, env)
    params["profiles"]["smoke"]["caps"]["train"] = 8  # active profile's caps: prepare stages first
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = set(json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], work, env)))
    assert changed == {f"prepare@{t}" for t in params["tasks"]} | {"report"}  # the report names the caps
    params["profiles"]["smoke"]["caps"]["train"] = 32  # back: nothing to redo
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "Data and pipelines are up to date" in run([sys.executable, "-m", "dvc", "status"], work, env)


def test_study_results_are_collected_and_tracked(scratch):
    work, env, _ = scratch
    summary = json.loads((work / "results/study/summary.json").read_text())
    assert summary["missing_runs"] == []
    assert set(summary["zero_shot_average"]) == {"xnli", "panx", "tatoeba"}
    assert set(summary["zero_shot_average"]["xnli"]) == {"none", "nli", "syntax"}
    assert summary["zero_shot_average"]["panx"]["none"]["n_seeds"] == 2
    scores = (work / "results/study/scores.csv").read_text().splitlines()
    assert scores[0] == "arm,target,split,language,seed,metric,value,primary" and len(scores) > 20
    from xstilts.tracking import read_runs

    runs = read_runs(work / "mlruns", yaml.safe_load((work / "params.yaml").read_text())["tracking"]["experiment"])
    names = {r["name"] for r in runs}
    assert {"target@xnli-nli-seed1", "intermediate:sick:seed1", "evaluate:panx", "retrieval:tatoeba"} <= names
    assert any(n.startswith("tune:target:xnli:trial") for n in names)
    assert all(r["status"] == "FINISHED" for r in runs)
    stage = next(r for r in runs if r["name"] == "target@xnli-nli-seed1")
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == stage["run_id"]]
    assert {c["name"] for c in children} == {"target:xnli:seed1", "evaluate:xnli"}
    assert all(c["tags"]["arm"] == "nli" and c["tags"]["intermediate_tasks"] == "sick" for c in children)
    assert (work / "optuna/optuna.db").is_file()
    exp = yaml.safe_load((work / "params.yaml").read_text())["tracking"]["experiment"]
    claims = (work / f"results/stats/{exp}/claims.csv").read_text().splitlines()
    assert claims[0].startswith("target,arm,delta,ci_low,ci_high,test,p,p_adjusted,adjustment")
    assert len(claims) == 1 + 3 * 2  # (xnli, panx, tatoeba) x (nli, syntax)
    assert "stats" in names and "report" in names
    page = (work / f"reports/{exp}/README.md").read_text()
    assert "## Headline findings" in page and (work / f"reports/{exp}/figures/gains_heatmap.png").is_file()


def test_one_targets_recipe_reruns_only_its_branch(scratch):
    work, env, _ = scratch
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["profiles"]["smoke"]["training"]["tasks"]["xnli"] = {"batch_size": 4}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = set(json.loads(run([sys.executable, "-m", "dvc", "status", "--json"], work, env)))
    assert changed == {"tune_target@xnli", "target@xnli"}
    out = run([sys.executable, "-m", "dvc", "repro"], work, env)
    ran = {l.split("'")[1] for l in out.splitlines() if l.startswith("Running stage")}
    assert ran - {"collect", "stats", "report"} == changed
    assert "already evaluated" not in out  # every arm x seed of xnli trained again with the new recipe
    diff = run([sys.executable, "-m", "dvc", "params", "diff"], work, env)
    assert "profiles.smoke.training.tasks.xnli.batch_size" in diff
    mdiff = run([sys.executable, "-m", "dvc", "metrics", "diff"], work, env)
    assert "results/metrics/xnli.json" in mdiff
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "xnli recipe"], work, env)


def test_one_arms_recipe_redoes_only_that_arms_runs(scratch):
    """Target stages depend on every arm's encoders; inside them, runs of unchanged arms are skipped."""
    work, env, _ = scratch
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["profiles"]["smoke"]["training"]["arms"]["syntax"] = {"batch_size": 4}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run([sys.executable, "-m", "dvc", "repro"], work, env)
    ran = {l.split("'")[1] for l in out.splitlines() if l.startswith("Running stage")}
    assert {"tune_intermediate@syntax", "intermediate@syntax", "target@xnli", "target@panx"} <= ran
    assert "intermediate@nli" not in ran
    for target in ("xnli", "panx"):
        for arm in ("none", "nli"):
            for seed in (1, 2):
                assert f"target {target} arm {arm} seed {seed}: already evaluated" in out
        assert f"target {target} arm syntax seed 1: already evaluated" not in out


def test_queued_experiments_run_two_at_a_time_into_the_workspace_stores(scratch):
    """`dvc exp run --queue` x 2 + `dvc queue start -j 2`: both succeed (no lock errors), and their runs and
    Optuna studies land in the workspace's stores, tagged with the experiment's name."""
    import sqlite3
    import time

    from xstilts.tracking import read_runs

    work, env, _ = scratch
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "before the queue"], work, env)
    dvc = [sys.executable, "-m", "dvc"]
    for name, bs in (("q-bs2", 2), ("q-bs6", 6)):
        run(dvc + ["exp", "run", "--queue", "-n", name, "-S", f"profiles.smoke.training.tasks.xnli.batch_size={bs}"],
            work, env)
    run(dvc + ["queue", "start", "-j", "2"], work, env)
    deadline = time.time() + 900
    while time.time() < deadline:
        status = run(dvc + ["queue", "status"], work, env)
        if not any(w in status for w in ("Running", "Queued")):
            break
        time.sleep(5)
    logs = "\n".join(run(dvc + ["queue", "logs", n], work, env) for n in ("q-bs2", "q-bs6"))
    assert status.count("Success") == 2, f"{status}\n{logs}"
    assert "database is locked" not in logs
    exp = yaml.safe_load((work / "params.yaml").read_text())["tracking"]["experiment"]
    runs = read_runs(work / "mlruns", exp)
    for name in ("q-bs2", "q-bs6"):
        mine = {r["name"]: r for r in runs if r["tags"].get("dvc_experiment") == name}
        assert {f"target@xnli-{a}-seed{s}" for a in ("none", "nli", "syntax") for s in (1, 2)} <= set(mine), name
        assert all(r["status"] == "FINISHED" for r in mine.values())
    assert not list((work / ".dvc/tmp/exps").rglob("mlflow.db"))  # nothing written into the temporary copies
    with sqlite3.connect(work / "optuna/optuna.db") as db:
        names = [n for (n,) in db.execute("select study_name from studies") if ":target:xnli:" in n]
    assert len(set(names)) >= 3  # the workspace's xnli studies plus one per queued recipe
