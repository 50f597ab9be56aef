"""Zero-shot evaluation of a trained target model on every language of its task.

Writes into the run directory: metrics.json (per split and language, averages, timing), predictions/<split>/
<lang>.jsonl (per example: id, prediction, gold and the metric's pieces, enough for paired resampling), the XTREME
export of the test split, and config.json (what was evaluated, how).
"""

from __future__ import annotations

import functools
import json
import resource
import time
from pathlib import Path

import numpy as np

from ..atomic import atomic_file, write_json
from ..config import Params
from ..data.features import encode
from ..data.prepare import load_meta, load_split
from ..errors import XstiltsError
from ..models.multitask import MultiTaskModel
from ..tasks.registry import get_task
from .export import export_predictions
from .predict import predict, primary, score

EVAL_ROLES = ("test", "test_dev")


@functools.cache  # the code does not change within a process
def evaluation_code_hash() -> str:
    """What the scores depend on besides the model: features, prediction and metric code (a change re-evaluates)."""
    import hashlib

    h = hashlib.sha256()
    pkg = Path(__file__).resolve().parents[1]
    for f in sorted([*pkg.glob("evaluation/*.py"), pkg / "data" / "features.py"]):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def scoring_head(task: str, trained: list[str], head: str | None = None) -> tuple[str, dict[str, str] | None]:
    """Which trained task's head scores `task`, and the label mapping into its labels (None: its own head).
    An evaluation-only task names the heads that may score it, with their mappings, in its registry entry
    (`scored_by`); `head` picks one when the model has several."""
    if task in trained and head in (None, task):
        return task, None
    spec = get_task(task)
    options = [t for t in trained if t in spec.scored_by and (head is None or t == head)]
    if not options:
        raise XstiltsError(f"the model was trained on {trained}, not on {task!r}; {task!r} can be scored by the head "
                           f"of: {', '.join(spec.scored_by) or 'none (no `scored_by` in its registry entry)'}")
    other = get_task(options[0])
    if other.format != spec.format:
        raise XstiltsError(f"{task!r} ({spec.format}) cannot be scored by the {other.format} head of {options[0]!r}")
    return options[0], spec.scored_by[options[0]]


def map_to_head(records: list[dict], mapping: dict[str, str], head_labels: list[str] | None) -> tuple[list, dict]:
    """Gold labels of an evaluation-only task in the scoring head's label space: tags missing from the mapping and
    from the head become O; a classification label with no place in the head is an error. Also the mapping's
    coverage: the share of gold non-O tags (or labels) that keep a non-O label."""
    from ..data.sources import map_labels

    labels = set(head_labels or [])
    out, kept, total = [], 0, 0
    for r in records:
        if "tags" in r:
            m = map_labels(r, {t: mapping.get(t, t if t in labels else "O") for t in r["tags"]})
            total += sum(t != "O" for t in r["tags"])
            kept += sum(a != "O" and b != "O" for a, b in zip(r["tags"], m["tags"]))
        elif isinstance(r.get("label"), str):
            m = map_labels(r, mapping)
            if labels and m["label"] not in labels:
                raise XstiltsError(f"label {r['label']!r} maps to {m['label']!r}, not a label of the scoring head "
                                   f"({sorted(labels)}): extend the task's `scored_by` mapping")
            total, kept = total + 1, kept + 1
        else:
            m = r
        out.append(m)
    return out, {"mapping": mapping, "gold_kept": kept, "gold_total": total,
                 "coverage": kept / total if total else None}


def evaluate_model(model_dir: str | Path, task: str, params: Params, out_dir: str | Path,
                   languages: list[str] | None = None, progress: bool = True, model=None,
                   head: str | None = None) -> dict:
    """Every evaluation split of `task` by the phase-3 run in `model_dir`; `model` is that run's model already in
    memory (its weights were not written), otherwise the weights are loaded from `model_dir`. A task the model was
    not trained on is scored by the head its registry entry names (`scored_by`), its labels mapped."""
    from ..models.tokenizer import load_tokenizer

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    done = model_dir / "train_metrics.json"
    if not done.is_file():
        raise XstiltsError(f"{model_dir} is not a finished training run ({done.name} missing)")
    train = json.loads(done.read_text())
    trained = [t if isinstance(t, str) else t["task"] for t in train["tasks"]]
    spec = get_task(task)
    head_task, mapping = scoring_head(task, trained, head)
    cfg = train["config"]
    meta = load_meta(params.data.prepared_dir, task)
    tok = load_tokenizer(model_dir / "encoder")
    if model is None:
        model = MultiTaskModel.load(model_dir)
    model.precision = cfg.get("precision", "fp32")
    head = model.head_for(head_task)
    label_names = model.specs[head].label_names
    mapped: dict = {}
    key = primary(spec.metric)

    evaluable = sorted({l for r in EVAL_ROLES for l in meta["languages"].get(r, [])})
    unknown = sorted(set(languages or []) - set(evaluable))
    if unknown:
        raise XstiltsError(f"task {task!r}: unknown evaluation language {unknown[0]!r}; expected one of: "
                           f"{', '.join(evaluable)}")
    results: dict = {}
    timing = {"examples": 0, "tokens": 0, "seconds": 0.0}
    t_start = time.perf_counter()
    for role in EVAL_ROLES:
        langs = meta["languages"].get(role, [])
        if languages:
            langs = [l for l in langs if l in languages]
        for lang in langs:
            records = load_split(params.data.prepared_dir, task, role, lang)
            if mapping is not None:
                records, mapped[f"{role}/{lang}"] = map_to_head(records, mapping, label_names)
            enc = encode(spec.format, records, tok, cfg["max_length"], label_names, train=False,
                         doc_stride=cfg["doc_stride"])
            preds, t = predict(model, head, enc, cfg["eval_batch_size"], tok.pad_token_id, cfg["max_answer_length"],
                               allow_null=any(r.get("is_impossible") for r in records),  # SQuAD v2-style data
                               desc=f"{task} {role} {lang}", progress=progress)
            metrics, pieces = score(spec.format, spec.metric, records, preds, lang)
            metrics["n"] = len(records)
            results.setdefault(role, {})[lang] = metrics
            with atomic_file(out_dir / "predictions" / role / f"{lang}.jsonl") as fh:
                for p in pieces:
                    fh.write(json.dumps(p, ensure_ascii=False) + "\n")
            if role == "test" and spec.xtreme:
                export_predictions(out_dir, spec.xtreme, lang, spec.format, records, preds)
            for k in ("examples", "tokens", "seconds"):
                timing[k] += t[k]
    if not results:
        raise XstiltsError(f"task {task!r} has no evaluation split (prepared roles: {', '.join(meta['languages'])})")
    averages = {}
    for role, per_lang in results.items():
        vals = {l: m[key] for l, m in per_lang.items()}
        averages[role] = {"all": float(np.mean(list(vals.values()))),
                          "zero_shot": float(np.mean([v for l, v in vals.items() if l != "en"]))
                          if any(l != "en" for l in vals) else None,
                          "n_languages": len(vals)}
    out = {
        "task": task, "metric": spec.metric, "primary": key, "model": str(model_dir), "stand_in": spec.stand_in,
        "train": {k: train.get(k) for k in ("phase", "tasks", "seed", "init", "dev", "best_step", "steps",
                                            "fingerprint")},
        "eval_code": evaluation_code_hash(),
        "scored_by": head_task, "label_mapping": mapped or None,
        "splits": results, "averages": averages,
        "timing": {**timing, "examples_per_s": timing["examples"] / timing["seconds"] if timing["seconds"] else None,
                   "tokens_per_s": timing["tokens"] / timing["seconds"] if timing["seconds"] else None,
                   "wall_seconds": time.perf_counter() - t_start,
                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024},
    }
    write_json(out_dir / "config.json", {"model_dir": str(model_dir), "task": task, "eval_config": cfg,
                                         "profile": params.profile, "prepared_dir": params.data.prepared_dir})
    write_json(out_dir / "metrics.json", out)
    return out
