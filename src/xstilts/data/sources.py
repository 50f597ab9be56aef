"""Two sources behind one interface: a local folder in XTREME's `download/` layout, and the Hugging Face hub.

`source.languages(task, role)` lists the languages a split has; `source.read(task, role, lang)` returns the
records in the task format's schema plus the number of examples read from the source before any filter.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import XstiltsError
from ..tasks.registry import HubSplit, LocalSplit, TaskSpec
from . import readers


@dataclass
class SplitData:
    records: list[dict]
    source_count: int          # examples in the source before holdout / id filters / dropped lines / caps
    origin: str                # the file (relative to the root) or hub dataset it came from
    file_counts: dict[str, int] | None = None  # examples per source file, where one split reads several


def in_holdout(value, fraction: float) -> bool:
    """Stable across runs and machines (no Python hash randomisation)."""
    h = int(hashlib.sha1(str(value).encode("utf-8")).hexdigest()[:8], 16)
    return (h % 100_000) < fraction * 100_000


def apply_holdout(records: Iterable[dict], holdout) -> list[dict]:
    if holdout is None:
        return list(records)
    want_heldout = holdout.part == "heldout"
    return [r for r in records if in_holdout(r[holdout.group_by], holdout.fraction) == want_heldout]


def map_labels(record: dict, mapping: dict[str, str], default: str | None = None) -> dict:
    """A record with its `label` or `tags` renamed by `mapping`; values missing from it stay (or become `default`)."""
    get = (lambda v: mapping.get(v, v)) if default is None else (lambda v: mapping.get(v, default))
    out = dict(record)
    if "tags" in out:
        out["tags"] = [get(t) for t in out["tags"]]
    elif "label" in out and isinstance(out["label"], str):
        out["label"] = get(out["label"])
    return out


def _require_split(task: TaskSpec, source: str, role: str):
    splits = task.splits(source)
    if role not in splits:
        raise XstiltsError(f"task {task.name!r} has no {role!r} split in the {source} source; "
                           f"it has: {', '.join(splits) or 'none'}")
    return splits[role]


class LocalSource:
    name = "local"

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise XstiltsError(f"data root {self.root} does not exist; unpack the bundle with `xstilts data unpack` "
                               f"(or `make data`), or set data.root to your XTREME download/ folder")

    def languages(self, task: TaskSpec, role: str) -> list[str]:
        split: LocalSplit = _require_split(task, self.name, role)
        if "{lang}" not in split.path:
            langs = split.languages or ["en"]
        elif split.languages is not None:
            langs = split.languages
        else:
            # the first {lang} captures, later ones must repeat it (mlqa: dev-context-de-question-de.json)
            first, *rest = re.escape(split.path).split(re.escape("{lang}"))
            pattern = re.compile(first + r"(?P<lang>[a-z]{2,3})" + r"(?P=lang)".join(rest) + "$")
            glob = split.path.replace("{lang}", "*")
            langs = sorted({m.group("lang") for p in self.root.glob(glob)
                            if (m := pattern.match(p.relative_to(self.root).as_posix()))})
        return [l for l in langs if l not in split.exclude_languages]

    def read(self, task: TaskSpec, role: str, lang: str) -> SplitData:
        split: LocalSplit = _require_split(task, self.name, role)
        rel = split.path.replace("{lang}", lang)
        path = self.root / rel
        if not path.is_file():
            raise XstiltsError(f"task {task.name!r}, split {role!r}, language {lang!r}: file not found: {path}")
        if split.reader not in readers.READERS:
            raise XstiltsError(f"task {task.name!r}: unknown reader {split.reader!r}; "
                               f"expected one of: {', '.join(readers.READERS)}")
        records = list(readers.READERS[split.reader](path, **split.options))
        count = len(records) if task.format != "bitext" else sum(r["side"] == "source" for r in records)
        if split.drop_lines:
            dropped = set(split.drop_lines)
            records = [r for r in records if r["_line"] not in dropped]
        extra_files = {}
        if split.ids is not None:
            ids_path = self.root / split.ids.path
            try:
                ids = set(json.loads(ids_path.read_text(encoding="utf-8")))
            except (OSError, json.JSONDecodeError) as e:
                raise XstiltsError(f"{ids_path}: expected a JSON object keyed by example id ({e})") from e
            extra_files[split.ids.path] = len(ids)
            inside = split.ids.keep == "inside"
            records = [r for r in records if (r["id"] in ids) == inside]
        for field, parts in split.concat.items():
            for r in records:
                r[field] = " ".join(r.pop(p) for p in parts)
        if split.filter:  # one file, several languages (or other slices): keep this language's rows
            want = {k: v.replace("{lang}", lang) for k, v in split.filter.items()}
            missing = [k for k in want if records and k not in records[0]]
            if missing:
                raise XstiltsError(f"task {task.name!r}, split {role!r}: filter field(s) {missing} not in the rows "
                                   f"of {rel}; fields: {', '.join(k for k in records[0] if not k.startswith('_'))}")
            records = [r for r in records if all(str(r.get(k)) == v for k, v in want.items())]
        if split.label_map:
            records = [map_labels(r, split.label_map) for r in records]
        records = apply_holdout(records, split.holdout)
        return SplitData(records, count, rel, {**_file_counts(task.format, path, rel, records, count), **extra_files})


def _file_counts(fmt: str, path: Path, rel: str, records: list[dict], count: int) -> dict[str, int]:
    """Per-file example counts (as MANIFEST.tsv counts them) for splits that read companion files."""
    if fmt == "retrieval":  # tatoeba: <l>-en.<l> and its line-aligned <l>-en.en
        return {rel: count, rel.rsplit(".", 1)[0] + ".en": count}
    if fmt == "bitext":  # bucc: .<l> and .en sentences, .gold pairs
        stem = rel.rsplit(".", 1)[0]
        sides = {side: sum(r["side"] == side for r in records) for side in ("source", "target", "gold")}
        return {rel: sides["source"], stem + ".en": sides["target"], stem + ".gold": sides["gold"]}
    return {rel: count}


class HubSource:
    """Hugging Face datasets (parquet/json repos; datasets 5.x runs no loading scripts).

    With `mirror` (params `data.hub_mirror`), repo ids resolve to local folders laid out like parquet hub repos:
    `<mirror>/<repo>/<config>/<split>-*.parquet` (or without `<config>/`). That serves offline copies of hub
    datasets, and it is how the tests exercise this path (the hub is unreachable here).
    """

    name = "hub"

    def __init__(self, mirror: str | Path | None = None):
        self.mirror = Path(mirror) if mirror else None

    def languages(self, task: TaskSpec, role: str) -> list[str]:
        return list(_require_split(task, self.name, role).languages)

    def _load(self, split: HubSplit, lang: str):
        import datasets

        code = split.lang_codes.get(lang, lang)
        config = split.config.replace("{lang}", code) if split.config else None
        local = self.mirror / split.repo if self.mirror else Path(split.repo)
        if self.mirror and not local.is_dir():
            raise XstiltsError(f"hub mirror {self.mirror} has no folder {split.repo!r} (expected <mirror>/<repo>/"
                               f"<config>/<split>-*.parquet)")
        try:
            if local.is_dir():
                folder = local / config if config else local
                files = sorted(folder.glob(f"{split.split}-*.parquet")) or sorted(folder.glob(f"{split.split}*.json*"))
                if not files:
                    raise XstiltsError(f"{folder}: no {split.split}-*.parquet or {split.split}*.json[l] files")
                kind = "parquet" if files[0].suffix == ".parquet" else "json"
                return datasets.load_dataset(kind, data_files=[str(f) for f in files], split="train"), code
            return datasets.load_dataset(split.repo, config, split=split.split), code
        except (FileNotFoundError, ConnectionError, OSError, ValueError) as e:
            raise XstiltsError(f"cannot load hub dataset {split.repo!r} config {config!r} split {split.split!r}: "
                               f"{e.__class__.__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e

    def read(self, task: TaskSpec, role: str, lang: str) -> SplitData:
        split: HubSplit = _require_split(task, self.name, role)
        if lang not in split.languages:
            raise XstiltsError(f"task {task.name!r}, hub split {role!r}: unknown language {lang!r}; "
                               f"expected one of: {', '.join(split.languages)}")
        ds, code = self._load(split, lang)
        count = len(ds)
        for col, value in split.filter.items():
            value = value.replace("{lang}", code)
            if col == "id_prefix":
                ds = ds.filter(lambda ex, v=value: str(ex["id"]).startswith(v))
            else:
                ds = ds.filter(lambda ex, c=col, v=value: str(ex[c]) == v)
        features = ds.features
        records = []
        for i, ex in enumerate(ds):
            rec = _hub_record(task.format, ex, split.columns, features, i)
            records.append(rec)
        if task.format == "bitext":
            records = _pairs_to_bitext(records)
        records = apply_holdout(records, split.holdout)
        origin = f"hub:{split.repo}" + (f"/{split.config.replace('{lang}', code)}" if split.config else "") \
            + f"[{split.split}]"
        return SplitData(records, count, origin)


def _decode(feature, value):
    """ClassLabel ints (also inside sequences) -> label names; everything else unchanged."""
    if hasattr(feature, "int2str") and isinstance(value, int):
        return feature.int2str(value)
    inner = getattr(feature, "feature", None)
    if inner is not None and hasattr(inner, "int2str") and isinstance(value, list):
        return [inner.int2str(v) for v in value]
    return value


_DEFAULT_FIELDS = {
    "classification": ("text_a", "text_b", "label"),
    "tagging": ("tokens", "tags"),
    "qa": ("id", "title", "context", "question", "answers"),
    "multiple_choice": ("context", "question", "choices", "label"),
    "retrieval": ("source", "target"),
    "bitext": ("source", "target"),
}


def _hub_record(fmt: str, ex: dict, columns: dict, features, index: int) -> dict:
    rec = {"id": str(index)}
    for field in _DEFAULT_FIELDS[fmt]:
        col = columns.get(field, field)
        if col in ex:
            rec[field] = _decode(features.get(col), ex[col])
    if fmt == "qa":
        ans = rec.get("answers") or {"text": [], "answer_start": []}
        rec["answers"] = {"text": list(ans["text"]), "answer_start": [int(s) for s in ans["answer_start"]]}
        rec.setdefault("title", "")
        rec["is_impossible"] = not rec["answers"]["text"]
    if fmt == "classification":
        rec["label"] = str(rec["label"])
    rec["_line"] = index + 1
    return rec


def _pairs_to_bitext(pairs: list[dict]) -> list[dict]:
    out = []
    for side in ("source", "target"):
        out += [{"id": f"{side[0]}-{i}", "side": side, "text": p[side], "_line": i + 1} for i, p in enumerate(pairs)]
    out += [{"id": f"s-{i}:t-{i}", "side": "gold", "source_id": f"s-{i}", "target_id": f"t-{i}", "_line": i + 1}
            for i in range(len(pairs))]
    return out


def make_source(kind: str, root: str | Path | None = None, hub_mirror: str | Path | None = None):
    if kind == "local":
        return LocalSource(root)
    if kind == "hub":
        return HubSource(hub_mirror)
    raise XstiltsError(f"unknown data source {kind!r}; expected one of: hub, local")
