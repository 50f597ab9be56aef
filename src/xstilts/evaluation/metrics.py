"""Metrics exactly as XTREME's official scorer computes them, with per-example pieces for paired resampling.

Every function returns the corpus score (in percent, as XTREME reports) and per-example records from which the
same score is recomputed on any resample: correctness for accuracy; true/predicted/correct entity counts per
sentence for seqeval F1; EM and F1 per question for QA.

Reproduced behaviours (DESIGN 4.3): seqeval 1.2.2 `f1_score` on the tag sequences as they are (UD-POS "F1" is
chunk F1 over runs of equal UPOS tags: seqeval reads the first letter as a B/I prefix); labels compared as exact
strings; SQuAD v1.1 normaliser for XQuAD and TyDiQA in every language; MLQA's per-language normaliser (Chinese
split per character); a question without a prediction scores 0; BUCC compares sets of pairs; Tatoeba's gold is
the line number.
"""

from __future__ import annotations

import re
import string
import sys
import unicodedata
import warnings
from collections import Counter
from typing import Iterable, Mapping, Sequence

from ..errors import XstiltsError


def _pct(x: float) -> float:
    return 100.0 * x


# ---------------------------------------------------------------- classification / retrieval accuracy

def accuracy(golds: Sequence[str], preds: Sequence[str]) -> tuple[float, list[int]]:
    """Exact string match, as XTREME's `accuracy` (labels are strings: '1' != 1)."""
    if len(golds) != len(preds):
        raise XstiltsError(f"accuracy: {len(golds)} gold labels but {len(preds)} predictions")
    correct = [int(str(g) == str(p)) for g, p in zip(golds, preds)]
    return (_pct(sum(correct) / len(correct)) if correct else 0.0), correct


def tatoeba_accuracy(pred_index: Sequence[int], gold_index: Sequence[int] | None = None) -> tuple[float, list[int]]:
    """Nearest-neighbour retrieval accuracy; the gold of source line i is target line i unless given."""
    gold = list(range(len(pred_index))) if gold_index is None else list(gold_index)
    correct = [int(p == g) for p, g in zip(pred_index, gold)]
    return (_pct(sum(correct) / len(correct)) if correct else 0.0), correct


# ---------------------------------------------------------------- sequence labelling (seqeval 1.2.2)

def sentence_entity_counts(gold: Sequence[str], pred: Sequence[str]) -> tuple[int, int, int]:
    """(true entities, predicted entities, correct entities) of one sentence, by seqeval's own chunker.

    seqeval's corpus F1 flattens sentences with an 'O' between them, so entities never cross sentences and the
    corpus counts are the sums of these per-sentence counts."""
    from seqeval.metrics.sequence_labeling import get_entities

    if len(gold) != len(pred):
        raise XstiltsError(f"seqeval: sentence with {len(gold)} gold tags but {len(pred)} predicted tags")
    with warnings.catch_warnings():  # UD-POS tags are not IOB tags by design ("X seems not to be NE tag")
        warnings.simplefilter("ignore", UserWarning)
        t = set(get_entities(list(gold)))
        p = set(get_entities(list(pred)))
    return len(t), len(p), len(t & p)


def f1_from_counts(counts: Iterable[Sequence[int]]) -> float:
    """Micro F1 (percent) from (true, pred, correct) triples, as seqeval computes it (0 when undefined)."""
    n_true = n_pred = n_correct = 0
    for t, p, c in counts:
        n_true += t
        n_pred += p
        n_correct += c
    if n_true == 0 or n_pred == 0 or n_correct == 0:
        return 0.0
    precision, recall = n_correct / n_pred, n_correct / n_true
    return _pct(2 * precision * recall / (precision + recall))


def seqeval_f1(golds: Sequence[Sequence[str]], preds: Sequence[Sequence[str]]) -> tuple[float, list[tuple]]:
    if len(golds) != len(preds):
        raise XstiltsError(f"seqeval: {len(golds)} gold sentences but {len(preds)} predicted")
    counts = [sentence_entity_counts(g, p) for g, p in zip(golds, preds)]
    return f1_from_counts(counts), counts


def token_accuracy(golds: Sequence[Sequence[str]], preds: Sequence[Sequence[str]]) -> tuple[float, list[tuple]]:
    """Token accuracy (for XPOS / dependency tagging); pieces per sentence are (correct tokens, tokens)."""
    pieces = [(sum(a == b for a, b in zip(g, p)), len(g)) for g, p in zip(golds, preds)]
    total = sum(n for _, n in pieces)
    return (_pct(sum(c for c, _ in pieces) / total) if total else 0.0), pieces


# ---------------------------------------------------------------- SQuAD v1.1 (XQuAD, TyDiQA)

_ARTICLES_EN = re.compile(r"\b(a|an|the)\b")
_ASCII_PUNCT = set(string.punctuation)


def normalize_squad(s: str) -> str:
    """The SQuAD v1.1 official normaliser: lower-case, drop ASCII punctuation, drop a/an/the, collapse spaces."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _ASCII_PUNCT)
    s = _ARTICLES_EN.sub(" ", s)
    return " ".join(s.split())


def _f1_tokens(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


# ---------------------------------------------------------------- MLQA (mlqa_evaluation_v1.py)

MLQA_PUNCT = {chr(i) for i in range(sys.maxunicode) if unicodedata.category(chr(i)).startswith("P")} | _ASCII_PUNCT
MLQA_WHITESPACE_LANGS = ("en", "es", "hi", "vi", "de", "ar")
MLQA_MIXED_SEGMENTATION_LANGS = ("zh",)
_MLQA_ARTICLES = {
    "en": re.compile(r"\b(a|an|the)\b"),
    "es": re.compile(r"\b(un|una|unos|unas|el|la|los|las)\b"),
    "vi": re.compile(r"\b(của|là|cái|chiếc|những)\b"),
    "de": re.compile(r"\b(ein|eine|einen|einem|eines|einer|der|die|das|den|dem|des)\b"),
    "ar": re.compile(r"\sال^|ال"),
}
_CJK = re.compile(r"[\u4e00-\u9fa5]")


def _mixed_segmentation(text: str) -> list[str]:
    out, buf = [], ""
    for ch in text:
        if _CJK.search(ch) or ch in MLQA_PUNCT:
            if buf:
                out.extend(buf.split())
                buf = ""
            out.append(ch)
        else:
            buf += ch
    if buf:
        out.extend(buf.split())
    return out


def normalize_mlqa(s: str, lang: str) -> str:
    if lang not in MLQA_WHITESPACE_LANGS + MLQA_MIXED_SEGMENTATION_LANGS:
        raise XstiltsError(f"MLQA normalisation: unknown language {lang!r}; expected one of: "
                           f"{', '.join(MLQA_WHITESPACE_LANGS + MLQA_MIXED_SEGMENTATION_LANGS)}")
    s = "".join(ch for ch in s.lower() if ch not in MLQA_PUNCT)
    if lang in _MLQA_ARTICLES:
        s = _MLQA_ARTICLES[lang].sub(" ", s)
    tokens = s.split() if lang in MLQA_WHITESPACE_LANGS else _mixed_segmentation(s)
    return " ".join(t for t in tokens if t.strip())


# ---------------------------------------------------------------- QA corpus scores

def qa_scores(golds: Mapping[str, Sequence[str]], preds: Mapping[str, str], lang: str | None = None,
              flavour: str = "squad") -> tuple[dict, list[dict]]:
    """EM and F1 (percent) over all gold questions; the max over gold answers; a missing prediction scores 0.

    flavour `squad` (XQuAD, TyDiQA: the English normaliser for every language) or `mlqa` (needs `lang`)."""
    if flavour == "mlqa" and lang is None:
        raise XstiltsError("MLQA scoring needs the language (its normaliser is per language)")
    norm = normalize_squad if flavour == "squad" else (lambda s: normalize_mlqa(s, lang))
    pieces = []
    for qid, answers in golds.items():
        if qid not in preds:
            pieces.append({"id": qid, "em": 0.0, "f1": 0.0, "answered": False})
            continue
        p = norm(preds[qid])
        gold_norm = [norm(a) for a in answers]
        em = max(float(p == g) for g in gold_norm)
        f1 = max(_f1_tokens(p.split(), g.split()) for g in gold_norm)
        pieces.append({"id": qid, "em": em, "f1": f1, "answered": True})
    n = len(pieces)
    score = {"exact_match": _pct(sum(x["em"] for x in pieces) / n) if n else 0.0,
             "f1": _pct(sum(x["f1"] for x in pieces) / n) if n else 0.0}
    return score, pieces


# ---------------------------------------------------------------- BUCC

def bucc_f1(gold_pairs: Iterable[tuple[str, str]], pred_pairs: Iterable[tuple[str, str]]) -> dict:
    gold, pred = set(map(tuple, gold_pairs)), set(map(tuple, pred_pairs))
    tp = len(gold & pred)
    precision = tp / len(pred) if pred else 0.0
    recall = tp / len(gold) if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": _pct(precision), "recall": _pct(recall), "f1": _pct(f1), "tp": tp,
            "n_pred": len(pred), "n_gold": len(gold)}


# ---------------------------------------------------------------- XTREME aggregate

QA_TASKS = ("xquad", "mlqa", "tydiqa")


def task_score(task: str, per_language: Mapping[str, Mapping[str, float]]) -> float:
    """A task's XTREME score: the mean over languages; for QA each language counts (EM + F1) / 2."""
    if not per_language:
        raise XstiltsError(f"task {task!r}: no per-language scores to aggregate")
    vals = []
    for lang, m in per_language.items():
        if task in QA_TASKS:
            vals.append((m["exact_match"] + m["f1"]) / 2)
        else:
            (v,) = [m[k] for k in ("accuracy", "f1") if k in m][:1] or [None]
            if v is None:
                raise XstiltsError(f"task {task!r}, language {lang!r}: expected an 'accuracy' or 'f1' score")
            vals.append(v)
    return sum(vals) / len(vals)


def xtreme_score(task_scores: Mapping[str, float]) -> float:
    """The benchmark score: the unweighted mean of the task scores given."""
    if not task_scores:
        raise XstiltsError("no task scores to aggregate")
    return sum(task_scores.values()) / len(task_scores)
