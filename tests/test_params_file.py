"""The repository's params.yaml: valid, and explicit about every key that dvc.yaml depends on."""

import re

import yaml

from conftest import REPO
from xstilts.config import load_params


def test_params_yaml_is_valid_for_every_profile():
    for profile in ("smoke", "mini", "paper"):
        p = load_params(REPO / "params.yaml", profile=profile)
        assert p.active.model.source
    assert load_params(REPO / "params.yaml").profile == "mini"


def test_every_profile_has_every_key_dvc_depends_on():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    dvc = (REPO / "dvc.yaml").read_text()
    keys = set(re.findall(r"profiles\.\$\{profile\}\.([a-z_]+)", dvc))
    assert keys >= {"model", "caps", "caps_per_task", "languages", "data_source"}
    for name, prof in raw["profiles"].items():
        missing = keys - set(prof)
        assert not missing, f"profiles.{name} lacks {sorted(missing)}: DVC fails on a missing params key"
