"""MLflow tracking through the CLI on the smoke profile: runs with tags, params, curves and per-language
metrics; artifacts without weights; a failing or terminated run is FAILED; a re-run resumes the same run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import Request, urlopen

import pytest
import yaml

from xstilts.tracking import WEIGHT_SUFFIXES, read_runs

pytestmark = pytest.mark.slow


@pytest.fixture
def cli(smoke_env, tmp_path):
    params, base = smoke_env
    pfile = tmp_path / "params.yaml"
    raw = params.model_dump()
    raw["tracking"] = {"enabled": True, "root": str(tmp_path / "mlruns"), "experiment": "test-study"}
    pfile.write_text(yaml.safe_dump(raw))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def run(*args, check=True, popen=False):
        cmd = ["xstilts", "--params", str(pfile), *args, "--quiet"]
        if popen:
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return subprocess.run(cmd, env=env, capture_output=True, text=True, check=check)

    return run, base, tmp_path


def _runs(tmp_path):
    return {r["name"]: r for r in read_runs(tmp_path / "mlruns", "test-study")}


def test_train_and_evaluate_are_tracked(cli):
    run, base, tmp = cli
    run("train", "--phase", "target", "--tasks", "panx", "--init", str(base), "--out", str(tmp / "m"),
        "--seed", "2", "--tag", "arm=none", "stage=target@panx-none-2")
    run("evaluate", "--model", str(tmp / "m"), "--task", "panx", "--out", str(tmp / "e"), "--tag", "arm=none")
    runs = _runs(tmp)
    tr, ev = runs["target:panx:seed2"], runs["evaluate:panx"]
    assert tr["status"] == ev["status"] == "FINISHED"
    assert {"phase": "target", "seed": "2", "arm": "none", "profile": "smoke", "tasks": "panx"}.items() <= tr["tags"].items()
    assert tr["tags"]["git_commit"] and tr["params"]["learning_rate"] == "0.001" and "train/loss" in tr["metrics"]
    assert "dev.panx.f1" in tr["metrics"] or "dev/objective" in tr["metrics"]
    assert {"test/de/f1", "test/zh/f1", "test/avg/zero_shot"} <= set(ev["metrics"])
    metrics = json.loads((tmp / "e/metrics.json").read_text())
    assert ev["metrics"]["test/de/f1"] == pytest.approx(metrics["splits"]["test"]["de"]["f1"])
    for r in (tr, ev):
        files = [p for p in Path(urlparse(r["artifact_uri"]).path).rglob("*") if p.is_file()]
        assert files and not [p for p in files if p.suffix in WEIGHT_SUFFIXES]
    assert any(p.name == "de.jsonl" for p in Path(urlparse(ev["artifact_uri"]).path).rglob("*"))


def test_a_failing_run_is_marked_failed_with_its_error(cli):
    run, base, tmp = cli
    run("train", "--phase", "target", "--tasks", "xnli", "--init", str(base), "--out", str(tmp / "m"), "--seed", "1")
    res = run("evaluate", "--model", str(tmp / "m"), "--task", "xnli", "--out", str(tmp / "e"),
              "--languages", "xx", check=False)
    assert res.returncode == 2 and "unknown evaluation language 'xx'" in res.stderr
    failed = _runs(tmp)["evaluate:xnli"]
    assert failed["status"] == "FAILED" and "unknown evaluation language" in failed["tags"]["error"]


def test_terminated_run_is_failed_then_resumed_in_the_same_run(cli):
    run, base, tmp = cli
    args = ["train", "--phase", "target", "--tasks", "panx", "--init", str(base), "--out", str(tmp / "k"),
            "--seed", "3", "--set", "epochs=20", "checkpoint_every=2"]
    proc = run(*args, popen=True)
    ckpt = tmp / "k/checkpoint/state.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 128 + signal.SIGTERM
    first = _runs(tmp)["target:panx:seed3"]
    assert first["status"] == "FAILED" and "SystemExit" in first["tags"]["error"]
    run(*args)
    again = [r for r in read_runs(tmp / "mlruns", "test-study") if r["name"] == "target:panx:seed3"]
    assert len(again) == 1 and again[0]["run_id"] == first["run_id"] and again[0]["status"] == "FINISHED"
    assert (tmp / "k/train_metrics.json").is_file()


def test_a_changed_recipe_opens_a_new_run(cli):
    run, base, tmp = cli
    args = ["train", "--phase", "target", "--tasks", "sick", "--init", str(base), "--out", str(tmp / "m"), "--seed", "1"]
    run(*args)
    run(*args, "--set", "learning_rate=0.0005")
    runs = [r for r in read_runs(tmp / "mlruns", "test-study") if r["name"] == "target:sick:seed1"]
    assert len(runs) == 2 and all(r["status"] == "FINISHED" for r in runs)
    assert {r["params"]["learning_rate"] for r in runs} == {"0.001", "0.0005"}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_ui_serves_the_tracked_runs(cli):
    """`make ui` (the README's command) on the project's store answers the MLflow REST API with our runs."""
    run, base, tmp = cli
    run("train", "--phase", "target", "--tasks", "panx", "--init", str(base), "--out", str(tmp / "m"), "--seed", "1")
    repo, venv, port = Path(__file__).resolve().parents[1], Path(sys.executable).parent.parent, _free_port()
    # -o: never let the test re-install the environment it runs in
    proc = subprocess.Popen(["make", "-s", "-C", str(repo), "ui", f"VENV={venv}", f"UI_PORT={port}",
                             f"MLRUNS={tmp / 'mlruns'}", "-o", f"{venv}/.installed"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline, found = time.time() + 120, None
        while found is None and time.time() < deadline and proc.poll() is None:
            try:
                with urlopen(f"{base_url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=test-study") as r:
                    found = json.load(r)["experiment"]["experiment_id"]
            except OSError:
                time.sleep(0.5)
        assert found is not None, f"the UI did not answer on port {port} (exit code {proc.poll()})"
        req = Request(f"{base_url}/api/2.0/mlflow/runs/search", method="POST",
                      data=json.dumps({"experiment_ids": [found]}).encode(), headers={"Content-Type": "application/json"})
        with urlopen(req) as r:
            runs = json.load(r)["runs"]
        names = {x["info"]["run_name"]: x for x in runs}
        assert names["target:panx:seed1"]["info"]["status"] == "FINISHED"
        assert any(m["key"] == "train/loss" for m in names["target:panx:seed1"]["data"]["metrics"])
        with urlopen(base_url + "/") as r:
            assert r.status == 200 and b"<html" in r.read().lower()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
