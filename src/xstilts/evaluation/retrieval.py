"""BUCC and Tatoeba score an encoder directly (no target phase), with configurable layer and pooling.

Tatoeba: nearest English neighbour of each source sentence by cosine; accuracy against the aligned line.
BUCC: for each source sentence its best target by cosine or ratio margin (Artetxe & Schwenk 2019, k neighbours
each way); a pair is mined when its score passes a threshold, chosen to maximise F1 on the gold pairs as XTREME
does on BUCC's sample set. Offline the sample is also what we report on, so that F1 is optimistic.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..atomic import atomic_file, write_json
from ..data.prepare import load_meta, load_split
from ..errors import XstiltsError
from ..models.heads import pool
from ..models.multitask import autocast
from ..tasks.registry import get_task
from . import metrics as M
from .export import export_predictions


@torch.no_grad()
def embed(encoder, tok, texts: list[str], layer: int, pooling: str, batch_size: int = 64, max_length: int = 128,
          desc: str = "embed", progress: bool = True, precision: str = "fp32") -> np.ndarray:
    """L2-normalised sentence embeddings from hidden layer `layer` (0 = embeddings, -1 = last)."""
    encoder.eval()
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = np.zeros((len(texts), encoder.config.hidden_size), dtype=np.float32)
    n_layers = encoder.config.num_hidden_layers
    if not -n_layers - 1 <= layer <= n_layers:
        raise XstiltsError(f"retrieval layer {layer} out of range: the encoder has layers 0..{n_layers} (or -1)")
    for s in tqdm(range(0, len(order), batch_size), desc=desc, leave=False, disable=not progress):
        idx = order[s:s + batch_size]
        b = tok([texts[i] for i in idx], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        with autocast(encoder, precision):
            h = encoder(input_ids=b["input_ids"], attention_mask=b["attention_mask"], output_hidden_states=True)
        e = pool(h.hidden_states[layer].float(), b["attention_mask"], pooling)
        out[idx] = torch.nn.functional.normalize(e, dim=-1).numpy()
    return out


def _knn_mean(sims: np.ndarray, k: int, axis: int) -> np.ndarray:
    k = min(k, sims.shape[axis])
    part = -np.partition(-sims, k - 1, axis=axis)
    return part.take(range(k), axis=axis).mean(axis=axis)


def best_targets(src: np.ndarray, tgt: np.ndarray, scoring: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    sims = src @ tgt.T
    if scoring == "cosine":
        best = sims.argmax(1)
        return best, sims[np.arange(len(src)), best]
    if scoring != "ratio_margin":
        raise XstiltsError(f"unknown retrieval scoring {scoring!r}; expected cosine or ratio_margin")
    src_nn = _knn_mean(sims, k, axis=1)
    tgt_nn = _knn_mean(sims, k, axis=0)
    margin = sims / ((src_nn[:, None] + tgt_nn[None, :]) / 2)
    best = margin.argmax(1)
    return best, margin[np.arange(len(src)), best]


def run_retrieval(encoder_dir: str | Path, task: str, prepared_dir: str, out_dir: str | Path, layer: int = -1,
                  pooling: str = "mean", scoring: str | None = None, k: int = 4, batch_size: int = 64,
                  max_length: int = 128, precision: str = "fp32", progress: bool = True) -> dict:
    from transformers import AutoModel

    from ..models.tokenizer import load_tokenizer

    encoder_dir, out_dir = Path(encoder_dir), Path(out_dir)
    spec = get_task(task)
    if spec.format not in ("retrieval", "bitext"):
        raise XstiltsError(f"task {task!r} is not a retrieval task (format {spec.format}); expected tatoeba or bucc2018")
    if not (encoder_dir / "config.json").is_file():
        raise XstiltsError(f"encoder {encoder_dir} not found (expected a Hugging Face folder with config.json)")
    scoring = scoring or ("ratio_margin" if spec.format == "bitext" else "cosine")
    tok = load_tokenizer(encoder_dir)
    encoder = AutoModel.from_pretrained(encoder_dir)
    meta = load_meta(prepared_dir, task)
    results, t0, n_sent = {}, time.perf_counter(), 0
    for lang in meta["languages"]["test"]:
        recs = load_split(prepared_dir, task, "test", lang)
        emb = lambda texts, side: embed(encoder, tok, texts, layer, pooling, batch_size, max_length,
                                        desc=f"{task} {lang} {side}", progress=progress, precision=precision)
        if spec.format == "retrieval":
            src, tgt = emb([r["source"] for r in recs], "src"), emb([r["target"] for r in recs], "en")
            n_sent += 2 * len(recs)
            best, _ = best_targets(src, tgt, scoring, k)
            acc, correct = M.tatoeba_accuracy(best.tolist())
            results[lang] = {"accuracy": acc, "n": len(recs)}
            pieces = [{"id": r["id"], "prediction": int(b), "gold": i, "correct": c}
                      for i, (r, b, c) in enumerate(zip(recs, best, correct))]
            preds = best.tolist()
        else:
            src_r = [r for r in recs if r["side"] == "source"]
            tgt_r = [r for r in recs if r["side"] == "target"]
            gold = {(r["source_id"], r["target_id"]) for r in recs if r["side"] == "gold"}
            src, tgt = emb([r["text"] for r in src_r], "src"), emb([r["text"] for r in tgt_r], "en")
            n_sent += len(src_r) + len(tgt_r)
            best, scores = best_targets(src, tgt, scoring, k)
            cands = sorted(((float(s), src_r[i]["id"], tgt_r[b]["id"]) for i, (b, s) in enumerate(zip(best, scores))),
                           reverse=True)
            best_f1, best_thr, n_keep, tp = -1.0, None, 0, 0
            for j, (s, a, b) in enumerate(cands, 1):  # threshold sweep: keep the top-j candidates
                tp += (a, b) in gold
                f1 = 2 * tp / (j + len(gold)) if gold else 0.0
                if f1 > best_f1:
                    best_f1, best_thr, n_keep = f1, s, j
            mined = [(a, b) for _, a, b in cands[:n_keep]]
            r = M.bucc_f1(gold, mined)
            results[lang] = {**r, "threshold": best_thr, "n_source": len(src_r), "n_target": len(tgt_r)}
            pieces = [{"id": f"{a}:{b}", "source_id": a, "target_id": b, "score": s, "mined": j < n_keep,
                       "gold": (a, b) in gold} for j, (s, a, b) in enumerate(cands)]
            preds = mined
        with atomic_file(out_dir / "predictions" / "test" / f"{lang}.jsonl") as fh:
            for p in pieces:
                fh.write(json.dumps(p, ensure_ascii=False) + "\n")
        export_predictions(out_dir, spec.xtreme, lang, spec.format, recs, preds)
    seconds = time.perf_counter() - t0
    key = "accuracy" if spec.format == "retrieval" else "f1"
    out = {"task": task, "metric": spec.metric, "encoder": str(encoder_dir), "stand_in": spec.stand_in,
           "layer": layer, "pooling": pooling, "scoring": scoring, "k": k, "max_length": max_length, "precision": precision,
           "splits": {"test": results},
           "averages": {"test": {"all": float(np.mean([m[key] for m in results.values()])),
                                 "n_languages": len(results)}},
           "timing": {"sentences": n_sent, "seconds": seconds, "sentences_per_s": n_sent / seconds}}
    write_json(out_dir / "metrics.json", out)
    return out
