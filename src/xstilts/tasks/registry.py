"""The task registry: `registry.yaml` validated into TaskSpec objects.

A task = format + source files (local) or hub ids + split roles + languages + labels + metric.
Record schemas per format (what `xstilts prepare` writes, one JSON object per line):
  classification   id, text_a, [text_b], label (string)
  tagging          id, tokens [str], tags [str]  ([heads] for dependencies)
  qa               id, title, context, question, answers {text: [str], answer_start: [int]}, is_impossible
  multiple_choice  id, context, question, choices [str], label (int index)
  retrieval        id, source, target               (line i of source translates line i of target)
  bitext           id, side (source|target|gold), text | source_id + target_id
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import ConfigError, unknown

FORMATS: dict[str, tuple[str, ...]] = {
    "classification": ("id", "text_a", "label"),
    "tagging": ("id", "tokens", "tags"),
    "qa": ("id", "context", "question", "answers"),
    "multiple_choice": ("id", "context", "question", "choices", "label"),
    "retrieval": ("id", "source", "target"),
    "bitext": ("id", "side"),
}
METRICS = ("accuracy", "seqeval_f1", "token_accuracy", "squad", "mlqa", "bucc_f1", "tatoeba_acc")
SPLIT_ROLES = ("train", "dev", "test", "inlang", "test_dev")
REGISTRY_FILE = Path(__file__).with_name("registry.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Holdout(_Strict):
    """A deterministic split of one file: rows whose `group_by` value hashes into `fraction` are held out."""

    group_by: str
    fraction: float = Field(gt=0, lt=1)
    part: Literal["rest", "heldout"]


class IdFilter(_Strict):
    """Keep records whose id is (`inside`) or is not (`outside`) a key of the JSON object in `path`."""

    path: str
    keep: Literal["inside", "outside"]


class LocalSplit(_Strict):
    path: str = Field(description="relative to the data root; `{lang}` marks the language code")
    reader: str
    options: dict = {}
    languages: list[str] | None = None
    filter: dict[str, str] = Field({}, description="keep rows whose field equals the value (`{lang}`: the language "
                                                   "read): one file holding several languages")
    label_map: dict[str, str] = Field({}, description="labels (or tags) renamed as they are read")
    exclude_languages: list[str] = []
    holdout: Holdout | None = None
    ids: IdFilter | None = None
    drop_lines: list[int] = []
    concat: dict[str, list[str]] = {}


class HubSplit(_Strict):
    repo: str = Field(description="hub dataset id, or a local folder of parquet/json files of the same shape")
    config: str | None = None
    split: str
    languages: list[str]
    columns: dict[str, str] = {}
    filter: dict[str, str] = {}
    lang_codes: dict[str, str] = {}
    holdout: Holdout | None = None


class TaskSpec(_Strict):
    name: str
    format: Literal["classification", "tagging", "qa", "multiple_choice", "retrieval", "bitext"]
    metric: str
    xtreme: str | None = None
    labels: list[str] | None = None
    stand_in: str = ""
    scored_by: dict[str, dict[str, str]] = Field(
        {}, description="trained task -> label mapping: that task's head may score this task (evaluation-only, "
                        "e.g. legal NER by a PAN-X head); labels missing from the mapping and from the head become "
                        "O for tagging")
    local: dict[str, LocalSplit] = {}
    hub: dict[str, HubSplit] = {}

    def splits(self, source: str) -> dict:
        return self.local if source == "local" else self.hub


EXTRA_ENV = "XSTILTS_EXTRA_TASKS"  # more registry files (os.pathsep-separated): a new dataset is an entry, not code


def _files() -> list[Path]:
    import os

    extra = [Path(p) for p in os.environ.get(EXTRA_ENV, "").split(os.pathsep) if p]
    missing = [str(p) for p in extra if not p.is_file()]
    if missing:
        raise ConfigError(f"{EXTRA_ENV}: registry file(s) not found: {', '.join(missing)}")
    return [REGISTRY_FILE, *extra]


def _load() -> dict[str, TaskSpec]:
    return _load_files(tuple(str(f) for f in _files()))


@functools.cache
def _load_files(files: tuple[str, ...]) -> dict[str, TaskSpec]:
    raw = {}
    for f in files:
        body = yaml.safe_load(Path(f).read_text(encoding="utf-8")) or {}
        clash = sorted(k for k in body if k in raw and not k.startswith("_"))
        if clash:
            raise ConfigError(f"{f}: task(s) {clash} already in the registry; give them other names")
        raw.update(body)
    REGISTRY = ", ".join(files)
    specs = {}
    for name, body in raw.items():
        if name.startswith("_"):  # YAML anchors only
            continue
        try:
            spec = TaskSpec.model_validate({"name": name, **body})
        except ValidationError as e:
            raise ConfigError(f"{REGISTRY}: task {name!r}: {e}") from None
        for source in ("local", "hub"):
            for role in spec.splits(source):
                if role not in SPLIT_ROLES:
                    raise ConfigError(f"{REGISTRY}: task {name!r}: unknown split role {role!r}; "
                                      f"expected one of: {', '.join(SPLIT_ROLES)}")
        if spec.metric not in METRICS:
            raise ConfigError(f"{REGISTRY}: task {name!r}: unknown metric {spec.metric!r}; "
                              f"expected one of: {', '.join(METRICS)}")
        specs[name] = spec
    return specs


def task_names() -> list[str]:
    return list(_load())


def get_task(name: str) -> TaskSpec:
    tasks = _load()
    if name not in tasks:
        raise unknown("task", name, tasks)
    return tasks[name]
