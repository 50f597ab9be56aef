"""One phase runner for every phase: a list of tasks + a sampler + AdamW with linear warm-up/decay + gradient
accumulation + English-dev evaluation with early stopping + checkpoints that a re-run resumes from.

A single-task phase is a multi-task phase with one task. Outputs in `out_dir`:
  encoder/ (Hugging Face folder), heads.pt, heads.json     the selected (best English-dev) model
  history.jsonl                                             loss per step, dev scores per evaluation
  train_metrics.json                                        written last: the phase is done when it exists
  checkpoint/                                               while running only (resume after a kill)
Determinism: batch order per (seed, task, epoch), the task sampler's RNG, torch's RNG (dropout, masking) and the
optimizer/scheduler are all restored on resume, so a resumed run ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import write_json
from ..config import Params, TrainConfig
from ..data.features import Encoded, encode, encode_mlm, mlm_texts
from ..data.prepare import load_meta, load_split, reference_records
from ..errors import XstiltsError
from ..evaluation.predict import predict, primary, score
from ..models.multitask import HeadSpec, MultiTaskModel, set_trainable
from ..tasks.registry import TaskSpec, get_task
from .batching import batch_order, collate, mask_tokens

DONE = "train_metrics.json"


@dataclass
class PhaseTask:
    name: str
    head: str
    spec: TaskSpec
    train: Encoded
    dev: Encoded | None
    dev_records: list[dict] | None


def _seed_for(*parts) -> int:
    return int(hashlib.sha1("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def task_names_of(tasks) -> list[str]:
    """The distinct task names of a phase's task list (names or task references), in order."""
    from ..config import as_ref

    return list(dict.fromkeys(as_ref(t).task for t in tasks))


def load_phase_tasks(tasks, params: Params, tok, cfg: TrainConfig) -> list[PhaseTask]:
    """One PhaseTask per distinct task of the phase: the records of all its references together (one head), the
    task's English dev for selection (the zero-shot protocol selects on English only)."""
    from ..config import as_ref

    refs = [as_ref(t) for t in tasks]
    out = []
    for name in task_names_of(refs):
        spec = get_task(name)
        if spec.format in ("retrieval", "bitext"):
            raise XstiltsError(f"task {name!r} ({spec.format}) has no training phase: retrieval tasks evaluate "
                               f"the encoder directly (`xstilts retrieval`)")
        meta = load_meta(params.data.prepared_dir, name)
        labels = meta["labels"]
        train_recs = [r for ref in refs if ref.task == name for r in reference_records(ref, params.data.prepared_dir)]
        if not train_recs:
            raise XstiltsError(f"task {name!r}: its references select no training examples")
        train = encode(spec.format, train_recs, tok, cfg.max_length, labels, train=True, doc_stride=cfg.doc_stride)
        # the registry's train language: English, except the legal and in-language tasks (de, pt)
        (lang,) = meta["languages"]["train"]
        dev_recs = None
        dev = None
        if lang in meta["languages"].get("dev", []):
            dev_recs = load_split(params.data.prepared_dir, name, "dev", lang)[: cfg.dev_cap]
            dev = encode(spec.format, dev_recs, tok, cfg.max_length, labels, train=False, doc_stride=cfg.doc_stride)
        head = next((h for h, members in cfg.shared_heads.items() if name in members), name)
        out.append(PhaseTask(name, head, spec, train, dev, dev_recs))
    return out


def head_specs(tasks: list[PhaseTask], cfg: TrainConfig) -> list[HeadSpec]:
    """One head per task, or one per shared group (its tasks must have the same format and labels)."""
    specs: dict[str, HeadSpec] = {}
    for t in tasks:
        labels = t.train.label_names
        if t.head in specs:
            s = specs[t.head]
            if s.fmt != t.spec.format or s.label_names != labels:
                raise XstiltsError(f"shared head {t.head!r}: task {t.name!r} has format {t.spec.format} and labels "
                                   f"{labels}, but {s.tasks[0]!r} has {s.fmt} and {s.label_names}")
            s.tasks.append(t.name)
            continue
        specs[t.head] = HeadSpec(t.head, t.spec.format, len(labels) if labels else None, labels, cfg.pooling,
                                 cfg.dropout, [t.name])
    return list(specs.values())


def sampler_probs(sizes: dict[str, int], cfg: TrainConfig) -> dict[str, float]:
    """jiant's samplers: uniform, proportional to (capped) size, or temperature (p ~ n^(1/T))."""
    capped = {t: min(n, cfg.example_cap) if cfg.example_cap else n for t, n in sizes.items()}
    if cfg.sampler == "uniform":
        w = {t: 1.0 for t in capped}
    elif cfg.sampler == "proportional":
        w = {t: float(n) for t, n in capped.items()}
    else:
        w = {t: float(n) ** (1.0 / cfg.temperature) for t, n in capped.items()}
    z = sum(w.values())
    return {t: v / z for t, v in w.items()}


def _trainable_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def _optimizer(model, cfg: TrainConfig):
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if n.endswith("bias") or "LayerNorm" in n or ".norm." in n else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=cfg.learning_rate)


def _schedule(optimizer, total: int, warmup: int):
    def f(step):
        if step < warmup:
            return (step + 1) / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)


def evaluate_dev(model, tasks: list[PhaseTask], cfg: TrainConfig, pad_id: int, progress: bool) -> dict:
    scores = {}
    for t in tasks:
        if t.dev is None:
            continue
        preds, _ = predict(model, t.head, t.dev, cfg.eval_batch_size, pad_id, cfg.max_answer_length,
                           allow_null=any(r.get("is_impossible") for r in t.dev_records),
                           desc=f"dev {t.name}", progress=progress)
        m, _ = score(t.spec.format, t.spec.metric, t.dev_records, preds, "en")
        scores[t.name] = m
    return scores


def dev_objective(scores: dict, tasks: list[PhaseTask]) -> float | None:
    vals = [scores[t.name][primary(t.spec.metric)] for t in tasks if t.name in scores]
    return float(np.mean(vals)) if vals else None


def run_phase(task_names: list[str], phase: str, init_dir: str | Path, out_dir: str | Path, seed: int,
              params: Params, cfg: TrainConfig | None = None, progress: bool = True, stop_after: int | None = None,
              log=None, save_weights: bool = True) -> dict:
    """Train (or resume, or skip when done) one phase; returns train_metrics.

    `stop_after` ends the process's work after that many optimizer steps without finishing (tests of resume).
    `log(metrics: dict, step: int)` receives the training curve and dev scores (the CLI passes MLflow's)."""
    return train_phase(task_names, phase, init_dir, out_dir, seed, params, cfg, progress, stop_after, log,
                       save_weights)[0]


def train_phase(task_names: list[str], phase: str, init_dir: str | Path, out_dir: str | Path, seed: int,
                params: Params, cfg: TrainConfig | None = None, progress: bool = True, stop_after: int | None = None,
                log=None, save_weights: bool = True) -> tuple[dict, MultiTaskModel | None]:
    """`run_phase` that also hands back the trained model (None when the run was already done or interrupted).
    `save_weights=False` writes the run's record but not its weights: for runs evaluated from memory and then
    dropped (the study's phase 3 without `keep_target_models`, tuning trials); such a run never counts as done."""
    from transformers import AutoModel

    from ..config import as_ref
    from ..models.tokenizer import load_tokenizer

    out_dir, init_dir = Path(out_dir), Path(init_dir)
    if not (init_dir / "config.json").is_file():
        raise XstiltsError(f"initial model {init_dir} not found (expected a Hugging Face folder with config.json)")
    cfg = cfg or params.active.training.resolve(phase, task_names_of(task_names))
    fp = fingerprint(task_names, phase, init_dir, seed, cfg, params)
    done = finished_run(out_dir, fp)
    if done:
        return done, None
    claim_out_dir(out_dir, fp)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    tok = load_tokenizer(init_dir)
    pad_id = tok.pad_token_id
    tasks = load_phase_tasks(task_names, params, tok, cfg)

    encoder = AutoModel.from_pretrained(init_dir)
    specs = head_specs(tasks, cfg)
    head_of = {t.name: t.head for t in tasks}
    streams: dict[str, list[dict]] = {t.name: t.train.features for t in tasks}
    if cfg.mlm:
        texts = [x for t in tasks for x in mlm_texts(t.spec.format, t.train.examples)]
        streams["mlm"] = encode_mlm(texts, tok, cfg.max_length).features
        specs.append(HeadSpec("mlm", "mlm"))
        head_of["mlm"] = "mlm"
    model = MultiTaskModel(encoder, specs)
    model = set_trainable(model, cfg.mode, cfg.lora_r, cfg.lora_alpha)
    model.precision = cfg.precision
    if cfg.attention_dropout is not None:
        model.set_attention_dropout(cfg.attention_dropout)

    sizes = {name: len(f) for name, f in streams.items()}
    probs = sampler_probs(sizes, cfg)
    capped = {n: min(s, cfg.example_cap) if cfg.example_cap else s for n, s in sizes.items()}
    micro_per_epoch = sum(math.ceil(n / cfg.batch_size) for n in capped.values())
    total = math.ceil(cfg.epochs * micro_per_epoch / cfg.grad_accum)
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    steps_per_epoch = max(1, math.ceil(micro_per_epoch / cfg.grad_accum))
    eval_every = cfg.eval_every or steps_per_epoch
    optimizer = _optimizer(model, cfg)
    scheduler = _schedule(optimizer, total, int(cfg.warmup_ratio * total))
    mask_gen = torch.Generator().manual_seed(seed)
    special = set(tok.all_special_ids)

    state = {"step": 0, "best": None, "best_step": None, "best_dev": None, "bad_evals": 0, "stopped_early": False,
             "task_epoch": {n: 0 for n in streams}, "task_pos": {n: 0 for n in streams},
             "train_seconds": 0.0, "train_examples": 0, "train_tokens": 0}
    sampler_rng = random.Random(_seed_for(seed, "sampler"))
    best_state = None
    ckpt = out_dir / "checkpoint"
    history_path = out_dir / "history.jsonl"
    if (ckpt / "state.pt").is_file():  # resume
        saved = torch.load(ckpt / "state.pt", weights_only=False)
        model.load_state_dict(saved["trainable"], strict=False)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        mask_gen.set_state(saved["mask_rng"])
        sampler_rng.setstate(saved["sampler_rng"])
        state = saved["state"]
        best_state = saved.get("best_state")
        _truncate_history(history_path, state["step"])
    elif history_path.exists():
        history_path.unlink()

    orders: dict[str, list[list[int]]] = {}

    def next_batch(name: str) -> list[dict]:
        feats = streams[name]
        key = (name, state["task_epoch"][name])
        if orders.get(name, (None,))[0] != key:
            rng = random.Random(_seed_for(seed, name, state["task_epoch"][name]))
            orders[name] = (key, batch_order(feats, cfg.batch_size, rng, cfg.group_by_length))
        batches = orders[name][1]
        b = batches[state["task_pos"][name]]
        state["task_pos"][name] += 1
        if state["task_pos"][name] >= len(batches):
            state["task_epoch"][name] += 1
            state["task_pos"][name] = 0
        return [feats[i] for i in b]

    names, weights = list(probs), [probs[n] for n in probs]
    bar = tqdm(total=total, initial=state["step"], desc=f"{phase} {'+'.join(task_names_of(task_names))} seed {seed}",
               disable=not progress)
    steps_this_process = 0
    with open(history_path, "a", encoding="utf-8") as hist:
        while state["step"] < total and not state["stopped_early"]:
            model.train()
            t0 = time.perf_counter()
            losses = []
            for _ in range(cfg.grad_accum):
                name = sampler_rng.choices(names, weights)[0]
                feats = next_batch(name)
                batch = collate(feats, pad_id)
                if name == "mlm":
                    batch = mask_tokens(batch, mask_gen, tok.mask_token_id, len(tok), special, cfg.mlm_probability)
                loss, _ = model(head_of[name], batch)
                (loss / cfg.grad_accum).backward()
                losses.append((name, loss.item()))
                state["train_examples"] += len(feats)
                state["train_tokens"] += int(batch["attention_mask"].sum())
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state["train_seconds"] += time.perf_counter() - t0
            state["step"] += 1
            steps_this_process += 1
            rec = {"step": state["step"], "lr": scheduler.get_last_lr()[0],
                   "loss": float(np.mean([l for _, l in losses])), "tasks": [n for n, _ in losses]}
            hist.write(json.dumps(rec) + "\n")
            if log:
                log({"train/loss": rec["loss"], "train/lr": rec["lr"]}, state["step"])
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}")
            if state["step"] % eval_every == 0 or state["step"] == total:
                scores = evaluate_dev(model, tasks, cfg, pad_id, progress)
                obj = dev_objective(scores, tasks)
                hist.write(json.dumps({"step": state["step"], "dev": scores, "objective": obj}) + "\n")
                if log:
                    log({"dev": {t: {k: v for k, v in m.items()} for t, m in scores.items()}, "dev/objective": obj},
                        state["step"])
                if obj is not None and (state["best"] is None or obj > state["best"]):
                    state.update(best=obj, best_step=state["step"], best_dev=scores, bad_evals=0)
                    best_state = _trainable_state(model)
                elif obj is not None:
                    state["bad_evals"] += 1
                    if cfg.patience and state["bad_evals"] >= cfg.patience:
                        state["stopped_early"] = True
            hist.flush()
            if state["step"] % cfg.checkpoint_every == 0 and state["step"] < total and not state["stopped_early"]:
                _save_checkpoint(ckpt, model, optimizer, scheduler, mask_gen, sampler_rng, state, best_state)
            if stop_after is not None and steps_this_process >= stop_after:
                bar.close()
                return {"interrupted_at": state["step"]}, None
    bar.close()

    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    model.save(out_dir, tok, weights=save_weights)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    metrics = {
        "phase": phase, "tasks": [as_ref(t).key() for t in task_names], "seed": seed, "init": str(init_dir),
        "fingerprint": fp, "train_examples": {t.name: len(t.train.examples) for t in tasks},
        "train_sequences": {t.name: len(t.train.features) for t in tasks},
        "stand_ins": {t.name: t.spec.stand_in for t in tasks if t.spec.stand_in},
        "config": cfg.model_dump(), "steps": state["step"], "total_steps": total,
        "stopped_early": state["stopped_early"], "best_step": state["best_step"], "dev_objective": state["best"],
        "dev": state["best_dev"], "sampler": probs,
        "train_examples_per_s": state["train_examples"] / state["train_seconds"] if state["train_seconds"] else None,
        "train_tokens_per_s": state["train_tokens"] / state["train_seconds"] if state["train_seconds"] else None,
        "seconds_per_step": state["train_seconds"] / state["step"] if state["step"] else None,
        "peak_rss_mb": peak_mb,
        "trainable_parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }
    write_json(out_dir / DONE, metrics)
    shutil.rmtree(ckpt, ignore_errors=True)
    return metrics, model


def fingerprint(task_names, phase, init_dir: Path, seed: int, cfg: TrainConfig, params: Params) -> str:
    """What determines a run's result: tasks (names, or task references with their split, languages and draws),
    phase, initial weights, seed, recipe and the prepared data. A plain task name hashes as before references
    existed, so earlier runs keep their fingerprints."""
    from ..config import as_ref

    h = hashlib.sha256()
    h.update(json.dumps({"tasks": [as_ref(t).key() for t in task_names], "phase": phase, "seed": seed,
                         "cfg": cfg.model_dump(), "profile": params.profile}, sort_keys=True).encode())
    for f in ("config.json", "model.safetensors"):  # the initial weights: size + first and last MiB (cheap)
        p = init_dir / f
        if p.is_file():
            size = p.stat().st_size
            with open(p, "rb") as fh:
                h.update(f"{f}:{size}".encode() + fh.read(1 << 20))
                fh.seek(max(0, size - (1 << 20)))
                h.update(fh.read())
    for t in task_names_of(task_names):
        meta = Path(params.data.prepared_dir) / t / "meta.json"
        if meta.is_file():
            h.update(meta.read_bytes())
    return h.hexdigest()[:16]


def finished_run(out_dir: Path, fp: str) -> dict | None:
    """train_metrics of a finished run with fingerprint fp whose weights are still there (a study may drop
    evaluated target weights: then the run counts as not done and trains again, with the same result)."""
    done = out_dir / DONE
    if not done.is_file() or not has_weights(out_dir):
        return None
    m = json.loads(done.read_text())
    return m if m.get("fingerprint") == fp else None


WEIGHT_FILES = ("encoder/model.safetensors", "heads.pt")  # what MultiTaskModel.save writes


def has_weights(out_dir: Path) -> bool:
    return all((Path(out_dir) / f).is_file() for f in WEIGHT_FILES)


def discard_weights(out_dir: Path) -> None:
    """Drop a finished phase's weights (after its evaluation); history, metrics and head specs stay."""
    for f in WEIGHT_FILES:
        (Path(out_dir) / f).unlink(missing_ok=True)


def claim_out_dir(out_dir: Path, fp: str) -> None:
    """Make out_dir this run's: outputs of another recipe, init, seed or data are removed (not resumed); a folder
    of the same run (its checkpoint, its MLflow run id) is kept so that the run resumes."""
    out_dir = Path(out_dir)
    existing = _read_fingerprint(out_dir)
    stale = (existing is not None and existing != fp) or \
        (existing is None and ((out_dir / DONE).exists() or (out_dir / "checkpoint").exists()))
    if stale:
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "fingerprint").write_text(fp + "\n")


def _read_fingerprint(out_dir: Path) -> str | None:
    p = out_dir / "fingerprint"
    return p.read_text().strip() if p.is_file() else None


def _save_checkpoint(ckpt: Path, model, optimizer, scheduler, mask_gen, sampler_rng, state, best_state) -> None:
    ckpt.mkdir(parents=True, exist_ok=True)
    tmp = ckpt / "state.pt.tmp"
    torch.save({"trainable": _trainable_state(model), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "torch_rng": torch.get_rng_state(),
                "mask_rng": mask_gen.get_state(), "sampler_rng": sampler_rng.getstate(),
                "state": json.loads(json.dumps(state)), "best_state": best_state}, tmp)
    tmp.replace(ckpt / "state.pt")


def _truncate_history(path: Path, step: int) -> None:
    """Drop history written after the checkpoint we resume from (it will be recomputed identically)."""
    if not path.is_file():
        return
    keep = [l for l in path.read_text().splitlines() if json.loads(l)["step"] <= step]
    path.write_text("".join(l + "\n" for l in keep))

