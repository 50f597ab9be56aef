"""`dvc repro pipelines/syntax_semantics/dvc.yaml` on the smoke profile, in a scratch git repository: a study
under pipelines/ runs end to end on the root pipeline's outputs, writes only under its own folders, and answers
its declared contrasts."""

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
    assert res.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{res.stdout}\n{res.stderr}"
    return res.stdout


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    work = tmp_path_factory.mktemp("study") / "repo"
    work.mkdir()
    for f in ("dvc.yaml", ".gitignore"):
        shutil.copy(REPO / f, work / f)
    shutil.copytree(REPO / ".dvc", work / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))
    shutil.copytree(REPO / "src", work / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copytree(REPO / "pipelines", work / "pipelines")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profile"] = "smoke"
    params["tasks"] = ["udpos", "panx"]
    params["data"].update(bundle=str((REPO / params["data"]["bundle"]).resolve()), root="data/raw/xtreme-mini")
    params["study"] = {"seeds": [1], "arms": {"none": []}, "intermediate_arms": [], "targets": ["udpos", "panx"],
                       "retrieval": []}
    for prof in params["profiles"].values():
        prof["training"]["arms"] = {}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sp = work / "pipelines/syntax_semantics/params.yaml"
    study = yaml.safe_load(sp.read_text())
    s = study["study"]  # a smoke-sized grid of the real study: 3 seeds, two arms per family
    s.update(seeds=[1, 2, 3], intermediate_arms=["upos", "xpos", "nli", "siqa"],
             families={"syntactic": ["upos", "xpos"], "semantic": ["nli", "siqa"]}, controls={"udpos": ["upos"]})
    s["arms"] = {"none": [], "upos": [{"task": "ud_ewt_upos", "k": 16}], "xpos": [{"task": "ud_ewt_xpos", "k": 16}],
                 "nli": [{"task": "sick", "k": 16}], "siqa": [{"task": "siqa", "k": 16}]}
    study["tasks"] = ["udpos", "panx", "ud_ewt_upos", "ud_ewt_xpos", "sick", "siqa"]
    for prof in study["profiles"].values():
        prof["training"]["arms"] = {a: {} for a in s["intermediate_arms"]}
    sp.write_text(yaml.safe_dump(study, sort_keys=False))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "init", "-q"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "scratch"], work, env)
    out = run([sys.executable, "-m", "dvc", "repro", "pipelines/syntax_semantics/dvc.yaml"], work, env)
    run(["git", "add", "-A"], work, env)
    run(["git", "commit", "-qm", "study repro"], work, env)
    return work, env, out


def test_the_study_runs_on_the_root_outputs_and_writes_only_its_own_folders(scratch):
    work, env, out = scratch
    for stage in ("model", "tune_target@udpos", "pipelines/syntax_semantics/dvc.yaml:prepare@ud_ewt_xpos",
                  "pipelines/syntax_semantics/dvc.yaml:intermediate@upos",
                  "pipelines/syntax_semantics/dvc.yaml:target@panx", "pipelines/syntax_semantics/dvc.yaml:report"):
        assert f"Running stage '{stage}'" in out, stage
    assert "Running stage 'target@udpos'" not in out  # the root study's own grid is not run
    assert (work / "results/syntax_semantics/runs/udpos/xpos/seed3/metrics.json").is_file()
    assert (work / "models/syntax_semantics/intermediate/nli/seed1/train_metrics.json").is_file()
    assert not (work / "results/runs").exists() and not (work / "models/intermediate").exists()
    m = json.loads((work / "models/syntax_semantics/intermediate/upos/seed1/train_metrics.json").read_text())
    assert m["train_examples"] == {"ud_ewt_upos": 16} and m["tasks"] == [{"task": "ud_ewt_upos", "k": 16}]


def test_the_study_answers_its_declared_contrasts(scratch):
    work, env, _ = scratch
    rows = json.loads((work / "results/syntax_semantics/stats/contrasts.json").read_text())
    assert {(r["contrast"], r["target"]) for r in rows} == {
        (f"{a} vs {b}", t) for a, b in (("syntactic", "semantic"), ("syntactic", "none"), ("semantic", "none"))
        for t in ("udpos", "panx")} | {("(syntactic vs semantic) x (udpos vs panx)", "udpos+panx")}
    udpos = next(r for r in rows if r["contrast"] == "syntactic vs semantic" and r["target"] == "udpos")
    assert udpos["controls_left_out"] == ["upos"] and udpos["a"] == ["xpos"] and udpos["n_seeds"] == 3
    overlap = json.loads((work / "results/syntax_semantics/overlap.json").read_text())
    assert overlap["controls"]["udpos"]["upos"]["label"] == "same-data control"
    page = (work / "reports/syntax_semantics/README.md").read_text()
    assert page.startswith("# Study report: syntax_semantics")
    assert "**Question.** Does intermediate training on syntactic versus semantic" in page
    assert page.index("**Answer, per declared contrast**") < page.index("## Design")
    assert "### Arms" in page and "ud_ewt_upos[train:k=16@0]" in page and "### Versus the paper" in page
    listed = run([sys.executable, "-m", "xstilts.cli", "studies"], work, env)
    assert "syntax_semantics" in listed and "30/30 runs, stats, report" in listed


def test_changing_the_study_reruns_nothing_of_the_root_and_the_root_nothing_of_the_study(scratch):
    work, env, _ = scratch
    dvc = [sys.executable, "-m", "dvc"]
    assert "up to date" in run(dvc + ["status", "pipelines/syntax_semantics/dvc.yaml"], work, env)
    sp = work / "pipelines/syntax_semantics/params.yaml"
    study = yaml.safe_load(sp.read_text())
    study["study"]["arms"]["nli"] = [{"task": "sick", "k": 8}]
    sp.write_text(yaml.safe_dump(study, sort_keys=False))
    changed = set(json.loads(run(dvc + ["status", "--json", "pipelines/syntax_semantics/dvc.yaml"], work, env)))
    assert "pipelines/syntax_semantics/dvc.yaml:intermediate@nli" in changed
    assert "pipelines/syntax_semantics/dvc.yaml:intermediate@upos" not in changed
    root = set(json.loads(run(dvc + ["status", "--json", "dvc.yaml"], work, env)))
    assert not {s for s in root if s in ("model", "tune_target@udpos", "prepare@udpos")}
