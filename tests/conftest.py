"""Shared fixtures: the real bundle (unpacked once) and params built from the repository's params.yaml."""

from __future__ import annotations

import copy
import os
from pathlib import Path

# Tests run offline (DESIGN 4.1): the hub is unreachable here and in CI; fail fast instead of retrying.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import pytest
import yaml

from xstilts.config import Params
from xstilts.data.bundle import unpack

REPO = Path(__file__).resolve().parents[1]


def load_raw_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The unpacked mini-XTREME bundle (CI unpacks it via `make test`; unpacking again is a no-op)."""
    raw = load_raw_params()
    root = REPO / raw["data"]["root"]
    bundle = (REPO / raw["data"]["bundle"]).resolve()
    unpack(bundle, root)
    return root


@pytest.fixture(scope="session")
def manifest(data_root) -> dict[str, int | None]:
    rows = (data_root / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()
    header = rows[0].split("\t")
    out = {}
    for row in rows[1:]:
        rec = dict(zip(header, row.split("\t")))
        out[rec["path"]] = int(rec["examples"]) if rec["examples"] else None
    return out


def params_for(out: Path, data_root: Path, profile: str, tasks: list[str] | None = None, **profile_edits) -> Params:
    """Params from params.yaml for `profile`, reading the bundle at data_root and writing under out."""
    raw = copy.deepcopy(load_raw_params())
    raw["profile"] = profile
    if tasks is not None:
        raw["tasks"] = tasks
    raw["data"].update(root=str(data_root), prepared_dir=str(out / "prepared"), counts_dir=str(out / "counts"))
    raw["tracking"].update(root=str(out / "mlruns"))
    raw["profiles"][profile].setdefault("tuning", {})["storage_dir"] = str(out / "optuna")
    raw["profiles"][profile].update(profile_edits)
    return Params.model_validate(raw)


@pytest.fixture
def make_params(tmp_path, data_root):
    """Params from params.yaml with the given profile, outputs under tmp_path, and optional profile edits."""

    def build(profile: str = "smoke", **profile_edits) -> Params:
        return params_for(tmp_path, data_root, profile, **profile_edits)

    return build


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """The smoke profile's base model: a tiny random BERT with the real XLM-R tokenizer."""
    from xstilts.config import RandomEncoder
    from xstilts.models.base import materialize

    cfg = type("M", (), {"source": "random", "random": RandomEncoder()})()
    out = tmp_path_factory.mktemp("tiny") / "base"
    materialize(cfg, out)
    return out


ENGINE_TASKS = ["panx", "xnli", "xquad", "tydiqa", "siqa", "sick", "ud_ewt_upos", "tatoeba", "bucc2018"]


@pytest.fixture(scope="session")
def smoke_env(tmp_path_factory, data_root, tiny_model_dir):
    """Smoke params with the engine's tasks prepared once per session, and the tiny base model."""
    from xstilts.data.prepare import prepare_task

    params = params_for(tmp_path_factory.mktemp("smoke"), data_root, "smoke", ENGINE_TASKS)
    for t in ENGINE_TASKS:
        prepare_task(t, params)
    return params, tiny_model_dir


def params_with_study(**update):
    """The repository's params with the `study` section edited (synthetic studies of the stats and report tests)."""
    from xstilts.config import load_params

    from xstilts.config import StudyConfig

    params = load_params(REPO / "params.yaml")
    raw = {**params.study.model_dump(), **update}
    if "arms" in update and "intermediate_arms" not in update:
        raw["intermediate_arms"] = [a for a in update["arms"] if a != "none"]
    return params.model_copy(update={"study": StudyConfig.model_validate(raw)})


def write_synthetic_run(root, target, arm, seed, acc_by_lang, rng, n=120, run_sd=0.0):
    """A finished accuracy run (metrics.json + per-example predictions) with examples drawn at the given accuracy
    per language: the stats and report stages read it exactly as they read a real run folder. run_sd: the run's
    luck, one shift of every language's accuracy (as a real run's seed moves all its languages together)."""
    import json

    run = root / target / arm / f"seed{seed}"
    splits = {}
    shift = rng.normal(0, run_sd) if run_sd else 0.0
    for lang, acc in acc_by_lang.items():
        correct = rng.binomial(1, min(1.0, max(0.0, acc + shift)), n)
        (run / "predictions" / "test").mkdir(parents=True, exist_ok=True)
        with open(run / "predictions" / "test" / f"{lang}.jsonl", "w") as fh:
            for i, c in enumerate(correct):
                fh.write(json.dumps({"id": str(i), "prediction": "a", "gold": "a" if c else "b", "correct": int(c)}) + "\n")
        splits[lang] = {"accuracy": 100 * correct.mean(), "n": n}
    (run / "metrics.json").write_text(json.dumps({
        "task": target, "metric": "accuracy", "primary": "accuracy", "splits": {"test": splits},
        "train": {"seed": seed, "dev": {target: {"accuracy": 60 + rng.normal()}}}}))
