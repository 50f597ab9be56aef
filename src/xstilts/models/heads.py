"""Task heads over a shared encoder, one per task format, plus an MLM head for continued masked-LM training.

Every head maps encoder hidden states (and the batch) to logits; losses live in `MultiTaskModel`.
"""

from __future__ import annotations

import torch
from torch import nn


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Sentence representation: `cls` (first token, XLM-R's <s>) or `mean` over real tokens (e5's training)."""
    if how == "cls":
        return hidden[:, 0]
    if how == "mean":
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    raise ValueError(f"unknown pooling {how!r}; expected cls or mean")


class ClassificationHead(nn.Module):
    """Single-sentence or sentence-pair classification (RoBERTa-style: dense + tanh + projection)."""

    def __init__(self, hidden: int, n_labels: int, dropout: float = 0.1, pooling: str = "mean"):
        super().__init__()
        self.pooling = pooling
        self.dense = nn.Linear(hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_labels)

    def forward(self, hidden, batch):
        x = self.dropout(pool(hidden, batch["attention_mask"], self.pooling))
        return self.out(self.dropout(torch.tanh(self.dense(x))))


class TaggingHead(nn.Module):
    """Token tagging: one label per labelled sub-token (the rest carry -100 and are ignored)."""

    def __init__(self, hidden: int, n_labels: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, n_labels)

    def forward(self, hidden, batch):
        return self.out(self.dropout(hidden))


class SpanHead(nn.Module):
    """Extractive QA: start and end logits per token (index 0, <s>, stands for "no answer in this window")."""

    def __init__(self, hidden: int, dropout: float = 0.1):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 2)

    def forward(self, hidden, batch):
        start, end = self.out(self.dropout(hidden)).unbind(-1)
        pad = batch["attention_mask"] == 0
        return start.masked_fill(pad, -1e4), end.masked_fill(pad, -1e4)


class MultipleChoiceHead(nn.Module):
    """One score per (context, choice) encoding; the batch is flattened to [B * n_choices, L] before encoding."""

    def __init__(self, hidden: int, dropout: float = 0.1, pooling: str = "mean"):
        super().__init__()
        self.pooling = pooling
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden, 1)

    def forward(self, hidden, batch):
        scores = self.out(self.dropout(pool(hidden, batch["attention_mask"], self.pooling))).squeeze(-1)
        return scores.view(-1, batch["n_choices"])


class MLMHead(nn.Module):
    """Masked-LM head for continued MLM during the intermediate phase. The base model ships none: a fresh
    transform (dense + GELU + LayerNorm) and a decoder tied to the encoder's word embeddings."""

    def __init__(self, hidden: int, word_embeddings: nn.Embedding, eps: float = 1e-12):
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=eps)
        self.word_embeddings = word_embeddings  # shared, not copied: the decoder is tied
        self.bias = nn.Parameter(torch.zeros(word_embeddings.num_embeddings))

    def forward(self, hidden, batch):
        # only masked positions are scored: full logits over 250k pieces would be ~2 GB for one CPU batch
        x = hidden[batch["labels"] != -100]
        x = self.norm(nn.functional.gelu(self.dense(x)))
        return x @ self.word_embeddings.weight.t() + self.bias
