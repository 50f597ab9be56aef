"""`dvc repro` of the real dvc.yaml on the smoke profile, in a scratch git repository.

Runs the stages for real (base model + prepare), then checks that a second repro does nothing and that
changing one profile's caps re-runs exactly the prepare stages while an inactive profile's edit re-runs nothing.
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
    params["tasks"] = ["xnli", "panx", "bucc2018"]
    params["data"]["root"] = str(data_root)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "init", "-q"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "scratch"], work, env)
    out = run([sys.executable, "-m", "dvc", "repro"], work, env)
    return work, env, out


def test_repro_builds_model_and_prepared_data(scratch):
    work, env, out = scratch
    assert "Running stage 'model'" in out and "Running stage 'prepare@panx'" in out
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
    params["profiles"]["smoke"]["caps"]["train"] = 8  # active profile's caps: prepare stages only
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = run([sys.executable, "-m", "dvc", "status", "--json"], work, env)
    changed = set(json.loads(status))
    assert changed == {"prepare@xnli", "prepare@panx", "prepare@bucc2018"}
    out = run([sys.executable, "-m", "dvc", "repro"], work, env)
    assert "Running stage 'model'" not in out
    counts = json.loads((work / "results/data/xnli.json").read_text())
    assert counts["splits"]["train"]["en"]["prepared"] == 8
