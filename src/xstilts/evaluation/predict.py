"""Inference for every trainable format, and scoring with the XTREME-exact metrics plus per-example pieces."""

from __future__ import annotations

import time
from collections import defaultdict

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.features import Encoded
from ..training.batching import collate, eval_batches
from . import metrics as M


@torch.no_grad()
def predict(model, head: str, enc: Encoded, batch_size: int = 64, pad_id: int = 1, max_answer_length: int = 30,
            n_best: int = 20, allow_null: bool = False, desc: str = "predict", progress: bool = True) -> tuple[list, dict]:
    """Predictions per example (label strings, tag lists, answer strings or choice indices) and timing."""
    model.eval()
    feats = enc.features
    outputs: list = [None] * len(feats)
    t0, n_tokens = time.perf_counter(), 0
    for idx in tqdm(eval_batches(feats, batch_size), desc=desc, leave=False, disable=not progress):
        batch = collate([feats[i] for i in idx], pad_id)
        n_tokens += int(batch["attention_mask"].sum())
        _, out = model(head, batch)
        if enc.fmt == "qa":
            start, end = (o.float().numpy() for o in out)
            for k, i in enumerate(idx):
                outputs[i] = (start[k], end[k])
        else:
            out = out.float().numpy()
            for k, i in enumerate(idx):
                outputs[i] = out[k]
    seconds = time.perf_counter() - t0
    if enc.fmt == "classification":
        preds = [enc.label_names[int(np.argmax(o))] for o in outputs]
    elif enc.fmt == "multiple_choice":
        preds = [int(np.argmax(o)) for o in outputs]
    elif enc.fmt == "tagging":
        fallback = "O" if "O" in enc.label_names else enc.label_names[0]
        preds = [[enc.label_names[int(np.argmax(o[p]))] if p is not None else fallback for p in f["positions"]]
                 for f, o in zip(feats, outputs)]
    elif enc.fmt == "qa":
        preds = qa_postprocess(enc, outputs, max_answer_length, n_best, allow_null)
    else:
        raise ValueError(enc.fmt)
    timing = {"examples": len(enc.examples), "seconds": seconds, "tokens": n_tokens,
              "examples_per_s": len(enc.examples) / seconds if seconds else None,
              "tokens_per_s": n_tokens / seconds if seconds else None}
    return preds, timing


def qa_postprocess(enc: Encoded, outputs, max_answer_length: int, n_best: int, allow_null: bool) -> list[str]:
    """Best span over all windows of each question: top-n starts x top-n ends inside the context,
    end >= start, at most `max_answer_length` tokens; score = start + end logit (as run_qa / utils_qa)."""
    by_example = defaultdict(list)
    for f, o in zip(enc.features, outputs):
        by_example[f["example_index"]].append((f, o))
    answers = []
    for i, ex in enumerate(enc.examples):
        best, best_score, null_score = "", -np.inf, -np.inf
        for f, (start, end) in by_example.get(i, []):
            offsets = f["offsets"]
            null_score = max(null_score, start[0] + end[0])
            starts = np.argsort(start)[::-1][:n_best]
            ends = np.argsort(end)[::-1][:n_best]
            for s in starts:
                if offsets[s] is None:
                    continue
                for e in ends:
                    if offsets[e] is None or e < s or e - s + 1 > max_answer_length:
                        continue
                    score = start[s] + end[e]
                    if score > best_score:
                        best_score = score
                        best = ex["context"][offsets[s][0]:offsets[e][1]]
        answers.append("" if allow_null and null_score > best_score else best)
    return answers


def primary(metric: str) -> str:
    return {"accuracy": "accuracy", "seqeval_f1": "f1", "token_accuracy": "accuracy", "squad": "f1",
            "mlqa": "f1", "bucc_f1": "f1", "tatoeba_acc": "accuracy"}[metric]


def score(fmt: str, metric: str, records: list[dict], preds: list, lang: str) -> tuple[dict, list[dict]]:
    """Corpus metrics (percent) and one record per example: id, prediction, gold, and the metric's pieces."""
    ids = [r["id"] for r in records]
    if fmt == "classification" or fmt == "multiple_choice":
        golds = [r["label"] for r in records]
        s, correct = M.accuracy([str(g) for g in golds], [str(p) for p in preds])
        return {"accuracy": s}, [{"id": i, "prediction": p, "gold": g, "correct": c}
                                 for i, p, g, c in zip(ids, preds, golds, correct)]
    if fmt == "tagging":
        golds = [r["tags"] for r in records]
        if metric == "token_accuracy":
            s, pieces = M.token_accuracy(golds, preds)
            return {"accuracy": s}, [{"id": i, "prediction": p, "gold": g, "correct_tokens": c, "tokens": n}
                                     for i, p, g, (c, n) in zip(ids, preds, golds, pieces)]
        s, pieces = M.seqeval_f1(golds, preds)
        return {"f1": s}, [{"id": i, "prediction": p, "gold": g, "n_true": t, "n_pred": q, "n_correct": c}
                           for i, p, g, (t, q, c) in zip(ids, preds, golds, pieces)]
    if fmt == "qa":
        golds = {r["id"]: r["answers"]["text"] or [""] for r in records}
        flavour = "mlqa" if metric == "mlqa" else "squad"
        s, pieces = M.qa_scores(golds, dict(zip(ids, preds)), lang=lang, flavour=flavour)
        pred_by_id = dict(zip(ids, preds))
        return s, [{**p, "prediction": pred_by_id.get(p["id"]), "gold": golds[p["id"]]} for p in pieces]
    raise ValueError(fmt)
