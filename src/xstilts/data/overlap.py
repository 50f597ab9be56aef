"""Overlap between what an arm trains on and what a target trains, selects and is evaluated on (DESIGN 4.8).

Measured, not assumed, on the prepared splits the runs actually use (data/prepared/<task>/<role>/<lang>.jsonl):
  exact   normalised text units (NFKC, case-folded, word characters only: robust to tokenisation and
          punctuation) of the arm's training data that occur in the target split, and the target split's units
          that occur in the arm's data;
  8-gram  the target split's units that share at least one word 8-gram with the arm's training data (a unit
          shorter than 8 words: the whole unit).
A text unit is a sentence-level field: NLI premise/hypothesis, a tagged sentence, a QA question or one sentence of
its context, a multiple-choice context/question/choice, a retrieval sentence.

Labels (`controls`): an arm is a *same-data control* for a target when at least half of one of its tasks' training
units are the target's own training data (the target phase then trains on what the arm already saw: a gain is
that data seen twice, not transfer), and an *evaluation-overlap control* when at least 1 % of the target's dev or
test units occur in the arm's training data. Either way its gain is reported, never claimed as transfer.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path

from ..atomic import atomic_file, write_json
from ..config import Params
from ..errors import XstiltsError
from .prepare import load_meta, load_split, reference_records

NGRAM = 8
SAME_DATA = 0.5      # share of an arm task's training units found in the target's train split
EVAL_OVERLAP = 0.01  # share of the target's dev/test units found in the arm's training data
TARGET_ROLES = ("train", "dev", "test")
_SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


def normalise(text: str) -> str:
    return " ".join(re.findall(r"\w+", unicodedata.normalize("NFKC", str(text)).casefold()))


def text_units(record: dict, fmt: str) -> list[str]:
    """The sentence-level texts of one prepared example."""
    if fmt == "classification":
        raw = [record.get("text_a"), record.get("text_b")]
    elif fmt == "tagging":
        raw = [" ".join(record["tokens"])]
    elif fmt == "qa":
        raw = [record["question"], *_SENTENCE_END.split(record["context"])]
    elif fmt == "multiple_choice":
        raw = [record.get("context"), record.get("question"), *record.get("choices", [])]
    elif fmt == "retrieval":
        raw = [record.get("source"), record.get("target")]
    elif fmt == "bitext":
        raw = [record.get("text")]
    else:
        raise XstiltsError(f"no text units for task format {fmt!r}")
    return [u for u in (normalise(r) for r in raw if r) if u]


def reference_units(prepared_dir: str | Path, ref) -> list[str]:
    """The units an arm actually trains on for one task reference (its split, languages and k-draw)."""
    fmt = load_meta(prepared_dir, ref.task)["format"]
    return [u for r in reference_records(ref, prepared_dir) for u in text_units(r, fmt)]


def split_units(prepared_dir: str | Path, task: str, role: str) -> list[str]:
    """Every language's units of one split role of a prepared task ([] when the task has no such role)."""
    meta = load_meta(prepared_dir, task)
    out: list[str] = []
    for lang in meta["languages"].get(role, []):
        for r in load_split(prepared_dir, task, role, lang):
            out += text_units(r, meta["format"])
    return out


def ngrams(units: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    """Word n-grams of the units; a unit shorter than n words counts as one gram of its own (so that short
    sentences are compared whole, not ignored)."""
    out = set()
    for u in units:
        w = u.split()
        out.update(tuple(w[i:i + n]) for i in range(len(w) - n + 1)) if len(w) >= n else out.add(tuple(w))
    return out


def measure(train: list[str], other: list[str]) -> dict:
    """Overlap of an arm task's training units with one target split's units (counts and percentages)."""
    train_set, other_set = set(train), set(other)
    grams = ngrams(train)
    shared = sum(1 for u in other if any(g in grams for g in ngrams([u])))
    in_other = sum(1 for u in train if u in other_set)
    of_other = sum(1 for u in other if u in train_set)
    pct = lambda k, n: 100.0 * k / n if n else 0.0
    return {"train_units": len(train), "target_units": len(other),
            "exact_train_in_target": in_other, "exact_train_in_target_pct": pct(in_other, len(train)),
            "exact_target_in_train": of_other, "exact_target_in_train_pct": pct(of_other, len(other)),
            "ngram_target_units": shared, "ngram_target_units_pct": pct(shared, len(other))}


def study_overlap(params: Params, refs_of: dict, targets: list[str], declared: dict | None = None) -> dict:
    """Every (arm task reference, target, split) overlap of a study and the resulting control labels per target and
    arm. refs_of: {arm: [task reference or task name, ...]} (the baseline's empty list is skipped); declared:
    {target: [arm, ...]} same-data controls declared in the study's params, labelled whatever the measure says."""
    from ..config import as_ref

    prepared = params.data.prepared_dir
    refs_of = {a: [as_ref(r) for r in refs] for a, refs in refs_of.items() if refs}
    train_units = {r.label(): reference_units(prepared, r) for refs in refs_of.values() for r in refs}
    target_units = {(t, role): split_units(prepared, t, role) for t in targets for role in TARGET_ROLES}
    rows, controls = [], {}
    for target, arms in (declared or {}).items():
        for arm in arms:
            controls.setdefault(target, {})[arm] = {"label": "same-data control", "task": None, "split": "train",
                                                    "why": f"declared in the study's params (study.controls.{target})"}
    for arm, refs in refs_of.items():
        for ref in refs:
            task = ref.label()
            for target in targets:
                for role in TARGET_ROLES:
                    other = target_units[(target, role)]
                    if not other:
                        continue
                    m = measure(train_units[task], other)
                    rows.append({"arm": arm, "task": task, "target": target, "split": role, **m})
                    label = None
                    if role == "train" and m["exact_train_in_target_pct"] >= 100 * SAME_DATA:
                        label = ("same-data control", f"{m['exact_train_in_target_pct']:.0f} % of {task}'s training "
                                 f"sentences are {target}'s own English training data")
                    elif role != "train" and m["exact_target_in_train_pct"] >= 100 * EVAL_OVERLAP:
                        label = ("evaluation-overlap control", f"{m['exact_target_in_train_pct']:.1f} % of {target}'s "
                                 f"{role} sentences occur in {task}'s training data")
                    if label and arm not in controls.get(target, {}):
                        controls.setdefault(target, {})[arm] = {"label": label[0], "why": label[1], "task": task,
                                                                "split": role}
    return {"ngram": NGRAM, "thresholds": {"same_data": SAME_DATA, "eval_overlap": EVAL_OVERLAP},
            "rows": rows, "controls": controls}


def write_overlap(result: dict, out: str | Path) -> Path:
    """<out>.json (rows + controls) and <out>.csv (rows) for the report and `dvc metrics`."""
    out = Path(out)
    write_json(out.with_suffix(".json"), result)
    with atomic_file(out.with_suffix(".csv")) as fh:
        if result["rows"]:
            w = csv.DictWriter(fh, fieldnames=list(result["rows"][0]))
            w.writeheader()
            w.writerows(result["rows"])
    return out.with_suffix(".json")
