"""make run's stand-in for OVMS picks the versions OVMS would serve from config.json."""

from __future__ import annotations

import json
from pathlib import Path

from devstack.ovmsfollow import wanted_models


def write_models(tmp_path: Path, policy: dict | None) -> Path:
    for version in ("1", "2", "3"):
        (tmp_path / "m" / version).mkdir(parents=True)
    (tmp_path / "m" / ".staging-4-ab12").mkdir()  # hidden from OVMS, and from the stand-in
    config = {"name": "m", "base_path": str(tmp_path / "m")}
    if policy is not None:
        config["model_version_policy"] = policy
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"model_config_list": [{"config": config}]}))
    return path


def test_default_policy_serves_the_latest_version_only(tmp_path: Path) -> None:
    assert list(wanted_models(write_models(tmp_path, None))["m"]) == [3]


def test_all_specific_and_latest_n_policies(tmp_path: Path) -> None:
    config = write_models(tmp_path, {"all": {}})
    assert sorted(wanted_models(config)["m"]) == [1, 2, 3]
    document = json.loads(config.read_text())
    document["model_config_list"][0]["config"]["model_version_policy"] = {"specific": {"versions": [1, 3]}}
    config.write_text(json.dumps(document))
    assert sorted(wanted_models(config)["m"]) == [1, 3]
    document["model_config_list"][0]["config"]["model_version_policy"] = {"latest": {"num_versions": 2}}
    config.write_text(json.dumps(document))
    assert sorted(wanted_models(config)["m"]) == [2, 3]


def test_a_version_republished_in_place_is_a_change(tmp_path: Path) -> None:
    config = write_models(tmp_path, None)
    before = wanted_models(config)
    (tmp_path / "m" / "3").rename(tmp_path / "m" / ".old")
    (tmp_path / "m" / "3").mkdir()  # a new directory inode, as the agent's exchange makes
    assert wanted_models(config) != before
