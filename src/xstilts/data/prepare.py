"""`xstilts prepare TASK`: normalised splits per language, capped per profile, with counts.

Writes `<prepared_dir>/<task>/<role>/<lang>.jsonl` plus `meta.json` (atomically: a killed run leaves no
half-written folder), and `<counts_dir>/<task>.json` (source and prepared counts per split and language;
DVC tracks it as metrics). meta.json also records the examples read from each source file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir, write_json
from ..config import Params
from ..errors import DataFormatError, XstiltsError, unknown
from ..tasks.registry import FORMATS, TaskSpec, get_task
from .sources import make_source

CAP_ROLE = {"train": "train", "inlang": "train", "dev": "dev", "test": "test", "test_dev": "test_dev"}
ENGLISH_ROLES = ("train", "dev")  # the zero-shot protocol: train and select on English only


def cap_records(fmt: str, records: list[dict], cap: int | None) -> list[dict]:
    """Keep the first `cap` examples (parallel files stay parallel). Bitext keeps the sentences of the first
    `cap` gold pairs plus up to 4*cap other sentences per side, so mining still has distractors."""
    if cap is None:
        return records
    if fmt != "bitext":
        return records[:cap]
    gold = [r for r in records if r["side"] == "gold"][:cap]
    keep = {r["source_id"] for r in gold} | {r["target_id"] for r in gold}
    out = []
    for side in ("source", "target"):
        sents = [r for r in records if r["side"] == side]
        others = [r for r in sents if r["id"] not in keep][: 4 * cap]
        chosen = {r["id"] for r in others} | keep
        out += [r for r in sents if r["id"] in chosen]
    return out + gold


def check_records(task: TaskSpec, records: list[dict], origin: str) -> None:
    """Schema and label checks: a bad record fails naming the file and line."""
    required = FORMATS[task.format]
    labels = set(task.labels) if task.labels else None
    for r in records:
        missing = [f for f in required if f not in r]
        if missing:
            raise DataFormatError(origin, r.get("_line"), f"fields {list(required)} for a {task.format} example",
                                  f"missing {missing}")
        if labels is None:
            continue
        if task.format == "classification" and r["label"] not in labels:
            raise DataFormatError(origin, r.get("_line"), f"a label in {sorted(labels)}", r["label"])
        if task.format == "tagging":
            bad = [t for t in r["tags"] if t not in labels]
            if bad:
                raise DataFormatError(origin, r.get("_line"), f"tags in {sorted(labels)}", bad[0])
        if task.format == "tagging" and len(r["tags"]) != len(r["tokens"]):
            raise DataFormatError(origin, r.get("_line"), "one tag per token")


def resolve_languages(task: TaskSpec, source, restrict: list[str] | None) -> dict[str, list[str]]:
    roles = task.splits(source.name)
    if not roles:
        raise XstiltsError(f"task {task.name!r} has no splits in the {source.name} source")
    langs = {role: source.languages(task, role) for role in roles}
    if restrict:
        available = sorted({l for ls in langs.values() for l in ls})
        for l in restrict:
            if l not in available:
                raise unknown(f"language for task {task.name!r}", l, available)
        dropped = sorted({l for role, ls in langs.items() if role not in ENGLISH_ROLES for l in ls} - set(restrict))
        if dropped:  # said once, here: the profile's language list leaves these files out
            import sys

            print(f"prepare {task.name}: the profile's language list leaves out {len(dropped)} language(s) the "
                  f"data has: {', '.join(dropped)}", file=sys.stderr)
        langs = {role: ls if role in ENGLISH_ROLES else [l for l in ls if l in restrict] for role, ls in langs.items()}
    return langs


def prepare_task(name: str, params: Params) -> dict:
    task = get_task(name)
    profile = params.active
    source = make_source(profile.data_source, params.data.root, params.data.hub_mirror)
    caps = params.caps_for(name)
    languages = resolve_languages(task, source, profile.languages.get(name))
    counts: dict = {"task": name, "profile": params.profile, "source": source.name, "splits": {}, "files": {}}
    label_set: set[str] = set()
    out_dir = Path(params.data.prepared_dir) / name
    with atomic_dir(out_dir) as tmp:
        for role, langs in languages.items():
            cap = getattr(caps, CAP_ROLE[role])
            if role == "test_dev" and cap is None:
                cap = caps.test
            for lang in langs:
                data = source.read(task, role, lang)
                check_records(task, data.records, data.origin)
                kept = cap_records(task.format, data.records, cap)
                (tmp / role).mkdir(exist_ok=True)
                with open(tmp / role / f"{lang}.jsonl", "w", encoding="utf-8") as fh:
                    for r in kept:
                        fh.write(json.dumps({k: v for k, v in r.items() if k != "_line"}, ensure_ascii=False) + "\n")
                n_kept = len(kept) if task.format != "bitext" else sum(r["side"] == "source" for r in kept)
                counts["splits"].setdefault(role, {})[lang] = {"source": data.source_count, "prepared": n_kept}
                counts["files"].update(data.file_counts or {data.origin: data.source_count})
                if task.format == "classification":
                    label_set |= {r["label"] for r in kept}
                elif task.format == "tagging":
                    label_set |= {t for r in kept for t in r["tags"]}
        meta = {
            "task": name, "format": task.format, "metric": task.metric, "xtreme": task.xtreme,
            "labels": task.labels or sorted(label_set) or None, "stand_in": task.stand_in,
            "source": source.name, "profile": params.profile, "caps": caps.model_dump(),
            "languages": languages, "files": counts["files"],
        }
        write_json(tmp / "meta.json", meta)
    # the metrics file stays small: per-file source counts live in meta.json
    write_json(Path(params.data.counts_dir) / f"{name}.json", {k: v for k, v in counts.items() if k != "files"})
    return counts


def load_meta(prepared_dir: str | Path, task: str) -> dict:
    """A prepared task's meta.json: format, labels, metric, languages per split role, stand-in."""
    meta_path = Path(prepared_dir) / task / "meta.json"
    if not meta_path.is_file():
        raise XstiltsError(f"task {task!r} is not prepared ({meta_path} missing): run `xstilts prepare {task}`")
    return json.loads(meta_path.read_text(encoding="utf-8"))


def load_split(prepared_dir: str | Path, task: str, role: str, lang: str) -> list[dict]:
    path = Path(prepared_dir) / task / role / f"{lang}.jsonl"
    if not path.is_file():
        meta = load_meta(prepared_dir, task)
        if role not in meta["languages"]:
            raise unknown(f"split of task {task!r}", role, meta["languages"])
        raise unknown(f"language for {task!r} split {role!r}", lang, meta["languages"][role])
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def draw(records: list[dict], k: int | None, *key) -> list[dict]:
    """k records drawn without replacement, seeded by `key` (task, split, language, draw seed): every run that
    names the same draw gets the same examples, in file order. None or k >= len: all records."""
    if k is None or k >= len(records):
        return records
    rng = np.random.default_rng(int(hashlib.sha1("/".join(map(str, key)).encode()).hexdigest()[:8], 16))
    keep = np.sort(rng.choice(len(records), size=k, replace=False))
    return [records[i] for i in keep]


def reference_records(ref, prepared_dir) -> list[dict]:
    """The training records of one task reference: its split role, languages and k-example draw per language."""
    meta = load_meta(prepared_dir, ref.task)
    available = meta["languages"].get(ref.split)
    if not available:
        raise XstiltsError(f"task {ref.task!r} has no prepared {ref.split!r} split; its splits: "
                           f"{', '.join(meta['languages'])}")
    langs = ref.languages or available
    missing = [l for l in langs if l not in available]
    if missing:
        raise XstiltsError(f"task {ref.task!r} split {ref.split!r}: no prepared language(s) {missing}; "
                           f"expected some of: {', '.join(available)}")
    out = []
    for lang in langs:
        out += draw(load_split(prepared_dir, ref.task, ref.split, lang), ref.k, ref.task, ref.split, lang,
                    ref.draw_seed)
    return out
