"""ovmsconfig.merge: what the agent owns in config.json, and what it leaves alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent import ovmsconfig
from modelsync.config import OvmsConfig


def ovms(base: str = "/models") -> OvmsConfig:
    return OvmsConfig(config_path=Path(base) / "config.json", base_path=Path(base))


def entries(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["config"]["name"]: e["config"] for e in document["model_config_list"]}


def test_a_hand_written_entry_wins_a_collision_and_is_reported() -> None:
    hand = {"name": "shadow", "base_path": "/opt/shadow", "nireq": 2}
    current = {
        "model_config_list": [{"config": hand}, {"config": {"name": "old", "base_path": "/models/old"}}]
    }
    merged = ovmsconfig.merge(current, ovms(), published=["shadow", "new"], managed=["shadow", "old", "new"])
    assert entries(merged.document) == {"shadow": hand, "new": {"name": "new", "base_path": "/models/new"}}
    assert merged.document["model_config_list"][0] == {"config": hand}, "kept in its place"
    assert merged.collisions == {"shadow": "/opt/shadow"}


def test_a_hand_written_entry_is_never_removed_as_managed() -> None:
    hand = {"name": "shadow", "base_path": "/opt/shadow"}
    merged = ovmsconfig.merge(
        {"model_config_list": [{"config": hand}]}, ovms(), published=[], managed=["shadow"]
    )
    assert entries(merged.document) == {"shadow": hand}
    assert merged.collisions == {}


def test_the_agents_own_entries_are_updated_and_removed() -> None:
    current = {
        "model_config_list": [
            {"config": {"name": "a", "base_path": "/models/a", "nireq": 9}},
            {"config": {"name": "gone", "base_path": "/models/gone"}},
        ],
        "monitoring": {"metrics": {"enable": True}},
    }
    merged = ovmsconfig.merge(current, ovms(), published=["a"], managed=["a", "gone"])
    assert entries(merged.document) == {"a": {"name": "a", "base_path": "/models/a"}}
    assert merged.document["monitoring"] == {"metrics": {"enable": True}}
    assert merged.collisions == {}
    assert ovmsconfig.hand_written(current, ovms("/mnt/models")) == {"a": "/models/a", "gone": "/models/gone"}


def test_the_agents_own_entry_gives_way_to_a_hand_written_one_of_the_same_name() -> None:
    hand = {"name": "shadow", "base_path": "/opt/shadow"}
    current = {
        "model_config_list": [{"config": {"name": "shadow", "base_path": "/models/shadow"}}, {"config": hand}]
    }
    merged = ovmsconfig.merge(current, ovms(), published=["shadow"], managed=["shadow"])
    assert merged.document["model_config_list"] == [{"config": hand}]
    assert merged.collisions == {"shadow": "/opt/shadow"}
