"""Batches: dynamic padding to the longest sequence in the batch, length-grouped order, MLM masking."""

from __future__ import annotations

import random

import torch

PAD_ID = 1  # XLM-R <pad>; overridden from the tokenizer where known


def length_of(f: dict) -> int:
    return max(len(x) for x in f["choices_input_ids"]) if "choices_input_ids" in f else len(f["input_ids"])


def batch_order(features: list[dict], batch_size: int, rng: random.Random, group_by_length: bool,
                mega: int = 50) -> list[list[int]]:
    """Shuffled batches of indices; with length grouping, examples of similar length share a batch (less
    padding) while the batch order stays random."""
    idx = list(range(len(features)))
    rng.shuffle(idx)
    if group_by_length:
        chunk = batch_size * mega
        idx = [i for s in range(0, len(idx), chunk)
               for i in sorted(idx[s:s + chunk], key=lambda i: -length_of(features[i]))]
    batches = [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


def eval_batches(features: list[dict], batch_size: int) -> list[list[int]]:
    """Deterministic length-sorted batches for inference (results are re-ordered by index afterwards)."""
    idx = sorted(range(len(features)), key=lambda i: length_of(features[i]))
    return [idx[s:s + batch_size] for s in range(0, len(idx), batch_size)]


def _pad(seqs, value):
    n = max(len(s) for s in seqs)
    return torch.tensor([list(s) + [value] * (n - len(s)) for s in seqs], dtype=torch.long)


def collate(features: list[dict], pad_id: int = PAD_ID) -> dict:
    if "choices_input_ids" in features[0]:
        flat = [ids for f in features for ids in f["choices_input_ids"]]
        batch = {"input_ids": _pad(flat, pad_id), "n_choices": len(features[0]["choices_input_ids"])}
    else:
        batch = {"input_ids": _pad([f["input_ids"] for f in features], pad_id)}
    batch["attention_mask"] = (batch["input_ids"] != pad_id).long()
    if "label" in features[0]:
        batch["label"] = torch.tensor([f["label"] for f in features], dtype=torch.long)
    if "labels" in features[0]:
        batch["labels"] = _pad([f["labels"] for f in features], -100)
    if "start_position" in features[0]:
        batch["start_position"] = torch.tensor([f["start_position"] for f in features], dtype=torch.long)
        batch["end_position"] = torch.tensor([f["end_position"] for f in features], dtype=torch.long)
    return batch


def mask_tokens(batch: dict, gen: torch.Generator, mask_id: int, vocab_size: int, special_ids: set[int],
                probability: float = 0.15) -> dict:
    """BERT masking (80 % <mask>, 10 % random piece, 10 % unchanged) on non-special tokens; labels elsewhere -100."""
    ids = batch["input_ids"].clone()
    labels = ids.clone()
    special = torch.zeros_like(ids, dtype=torch.bool)
    for s in special_ids:
        special |= ids == s
    chosen = (torch.rand(ids.shape, generator=gen) < probability) & ~special
    labels[~chosen] = -100
    replace = chosen & (torch.rand(ids.shape, generator=gen) < 0.8)
    ids[replace] = mask_id
    randomise = chosen & ~replace & (torch.rand(ids.shape, generator=gen) < 0.5)
    ids[randomise] = torch.randint(vocab_size, ids.shape, generator=gen)[randomise]
    return {**batch, "input_ids": ids, "labels": labels}
