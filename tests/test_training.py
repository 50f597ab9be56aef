"""The phase runner on the smoke profile: every format trains, runs are deterministic, a killed run resumes to
the same result, phases hand over the encoder (heads dropped), and the trainable modes do what they say."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from xstilts.errors import XstiltsError
from xstilts.training.runner import run_phase


def _cfg(params, phase, tasks, **kw):
    return params.active.training.resolve(phase, tasks).model_copy(update=kw)


def _heads(run: Path) -> dict:
    return torch.load(run / "heads.pt")


@pytest.mark.parametrize("task", ["panx", "xnli", "tydiqa", "siqa"])
def test_every_format_trains_and_selects_on_english_dev(task, smoke_env, tmp_path):
    params, base = smoke_env
    m = run_phase([task], "target", base, tmp_path / "run", 1, params, progress=False)
    assert m["steps"] == m["total_steps"] > 0 and m["best_step"] is not None
    assert set(m["dev"]) == {task} and m["dev_objective"] is not None
    assert (tmp_path / "run/encoder/config.json").is_file() and not (tmp_path / "run/checkpoint").exists()
    hist = [json.loads(l) for l in (tmp_path / "run/history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in hist if "loss" in h] == list(range(1, m["steps"] + 1))
    # a finished phase is not redone
    again = run_phase([task], "target", base, tmp_path / "run", 1, params, progress=False)
    assert again == m


def test_same_seed_same_result_other_seed_differs(smoke_env, tmp_path):
    params, base = smoke_env
    a = run_phase(["xnli"], "target", base, tmp_path / "a", 3, params, progress=False)
    b = run_phase(["xnli"], "target", base, tmp_path / "b", 3, params, progress=False)
    c = run_phase(["xnli"], "target", base, tmp_path / "c", 4, params, progress=False)
    ha, hb, hc = _heads(tmp_path / "a"), _heads(tmp_path / "b"), _heads(tmp_path / "c")
    assert all(torch.equal(ha[k], hb[k]) for k in ha) and a["dev"] == b["dev"]
    assert not all(torch.equal(ha[k], hc[k]) for k in ha)


def test_multitask_with_mlm_resumes_in_process_to_the_same_result(smoke_env, tmp_path):
    params, base = smoke_env
    cfg = _cfg(params, "intermediate", ["sick", "ud_ewt_upos"], mlm=True, sampler="temperature", checkpoint_every=3)
    full = run_phase(["sick", "ud_ewt_upos"], "intermediate", base, tmp_path / "full", 2, params, cfg, progress=False)
    assert set(full["sampler"]) == {"sick", "ud_ewt_upos", "mlm"}
    part = run_phase(["sick", "ud_ewt_upos"], "intermediate", base, tmp_path / "part", 2, params, cfg,
                     progress=False, stop_after=4)
    assert part == {"interrupted_at": 4} and (tmp_path / "part/checkpoint/state.pt").is_file()
    resumed = run_phase(["sick", "ud_ewt_upos"], "intermediate", base, tmp_path / "part", 2, params, cfg,
                        progress=False)
    for k in ("dev", "steps", "best_step", "dev_objective"):
        assert resumed[k] == full[k]
    assert (tmp_path / "full/history.jsonl").read_text() == (tmp_path / "part/history.jsonl").read_text()
    hf, hp = _heads(tmp_path / "full"), _heads(tmp_path / "part")
    assert all(torch.equal(hf[k], hp[k]) for k in hf)


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_and_matches_an_uninterrupted_run(smoke_env, tmp_path):
    params, base = smoke_env
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params.model_dump()))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def cmd(out):
        return ["xstilts", "--params", str(pfile), "train", "--phase", "target", "--tasks", "panx", "--init",
                str(base), "--out", str(out), "--seed", "5", "--quiet", "--set", "epochs=20", "checkpoint_every=2"]

    subprocess.run(cmd(tmp_path / "whole"), check=True, env=env, capture_output=True)
    proc = subprocess.Popen(cmd(tmp_path / "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed/checkpoint/state.pt"
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed/train_metrics.json").exists()
    step_at_kill = torch.load(ckpt, weights_only=False)["state"]["step"]
    assert 0 < step_at_kill < 80
    subprocess.run(cmd(tmp_path / "killed"), check=True, env=env, capture_output=True)
    whole = json.loads((tmp_path / "whole/train_metrics.json").read_text())
    killed = json.loads((tmp_path / "killed/train_metrics.json").read_text())
    for k in ("dev", "steps", "best_step", "dev_objective", "total_steps"):
        assert killed[k] == whole[k]
    assert (tmp_path / "whole/history.jsonl").read_text() == (tmp_path / "killed/history.jsonl").read_text()
    a = load_file(tmp_path / "whole/encoder/model.safetensors")
    b = load_file(tmp_path / "killed/encoder/model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_phase_hand_over_drops_intermediate_heads(smoke_env, tmp_path):
    params, base = smoke_env
    run_phase(["sick"], "intermediate", base, tmp_path / "inter", 1, params, progress=False)
    m = run_phase(["xnli"], "target", tmp_path / "inter/encoder", tmp_path / "target", 1, params, progress=False)
    assert m["init"] == str(tmp_path / "inter/encoder")
    specs = json.loads((tmp_path / "target/heads.json").read_text())
    assert [s["name"] for s in specs] == ["xnli"]
    inter = load_file(tmp_path / "inter/encoder/model.safetensors")
    basew = load_file(Path(base) / "model.safetensors")
    k = "encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(inter[k], basew[k])  # the intermediate phase changed the encoder it hands over


@pytest.mark.parametrize("mode", ["frozen_embeddings", "full", "lora"])
def test_trainable_modes(mode, smoke_env, tmp_path):
    params, base = smoke_env
    cfg = _cfg(params, "target", ["xnli"], mode=mode)
    m = run_phase(["xnli"], "target", base, tmp_path / "run", 1, params, cfg, progress=False)
    out = load_file(tmp_path / "run/encoder/model.safetensors")
    basew = load_file(Path(base) / "model.safetensors")
    emb = "embeddings.word_embeddings.weight"
    assert all("lora" not in k for k in out)  # LoRA is merged: the next phase gets a plain encoder
    if mode == "frozen_embeddings":
        assert torch.equal(out[emb], basew[emb])
        assert m["trainable_parameters"] < sum(v.numel() for v in basew.values())
    elif mode == "full":
        assert not torch.equal(out[emb], basew[emb])
    else:
        k = "encoder.layer.0.attention.self.query.weight"
        assert not torch.equal(out[k], basew[k]) and torch.equal(out[emb], basew[emb])


def test_retrieval_tasks_have_no_training_phase(smoke_env, tmp_path):
    params, base = smoke_env
    with pytest.raises(XstiltsError, match="'tatoeba' \\(retrieval\\) has no training phase"):
        run_phase(["tatoeba"], "target", base, tmp_path / "r", 1, params, progress=False)
    with pytest.raises(XstiltsError, match="initial model .* not found"):
        run_phase(["xnli"], "target", tmp_path / "nowhere", tmp_path / "r", 1, params, progress=False)


def test_tasks_can_share_a_head(smoke_env, tmp_path):
    params, base = smoke_env
    cfg = _cfg(params, "intermediate", ["sick", "xnli"], shared_heads={"nli": ["sick", "xnli"]})
    m = run_phase(["sick", "xnli"], "intermediate", base, tmp_path / "run", 1, params, cfg, progress=False)
    specs = json.loads((tmp_path / "run/heads.json").read_text())
    assert [(s["name"], s["tasks"]) for s in specs] == [("nli", ["sick", "xnli"])]
    assert set(m["dev"]) == {"sick", "xnli"}
    bad = _cfg(params, "intermediate", ["sick", "panx"], shared_heads={"x": ["sick", "panx"]})
    with pytest.raises(XstiltsError, match="shared head 'x': task 'panx' has format tagging"):
        run_phase(["sick", "panx"], "intermediate", base, tmp_path / "bad", 1, params, bad, progress=False)


def test_a_changed_recipe_retrains_instead_of_reusing_the_old_run(smoke_env, tmp_path):
    params, base = smoke_env
    a = run_phase(["sick"], "target", base, tmp_path / "run", 1, params, progress=False)
    same = run_phase(["sick"], "target", base, tmp_path / "run", 1, params, progress=False)
    assert same == a
    other = _cfg(params, "target", ["sick"], learning_rate=5e-4)
    b = run_phase(["sick"], "target", base, tmp_path / "run", 1, params, other, progress=False)
    assert b["fingerprint"] != a["fingerprint"] and b["config"]["learning_rate"] == 5e-4


def test_non_english_tasks_train_and_select_in_their_registry_language(smoke_env, tmp_path):
    from xstilts.data.prepare import prepare_task

    params, base = smoke_env
    prepare_task("xglue_nli_de", params)
    m = run_phase(["xglue_nli_de"], "intermediate", base, tmp_path / "run", 1, params, progress=False)
    assert set(m["dev"]) == {"xglue_nli_de"} and m["dev_objective"] is not None  # German dev selected on


def test_attention_dropout_changes_training_but_not_the_saved_config(smoke_env, tmp_path):
    params, base = smoke_env
    own = json.loads((Path(base) / "config.json").read_text())["attention_probs_dropout_prob"]
    assert own > 0
    off = _cfg(params, "target", ["xnli"], attention_dropout=0.0, precision="bf16")  # the math-kernel path
    on = _cfg(params, "target", ["xnli"], precision="bf16")
    a = run_phase(["xnli"], "target", base, tmp_path / "a", 1, params, off, progress=False)
    b = run_phase(["xnli"], "target", base, tmp_path / "b", 1, params, off, progress=False)
    run_phase(["xnli"], "target", base, tmp_path / "c", 1, params, on, progress=False)
    ha, hb, hc = _heads(tmp_path / "a"), _heads(tmp_path / "b"), _heads(tmp_path / "c")
    assert all(torch.equal(ha[k], hb[k]) for k in ha) and a["dev"] == b["dev"]
    assert not all(torch.equal(ha[k], hc[k]) for k in ha)
    # the next phase starts from the model's own attention dropout, whatever this phase trained with
    assert json.loads((tmp_path / "a/encoder/config.json").read_text())["attention_probs_dropout_prob"] == own
