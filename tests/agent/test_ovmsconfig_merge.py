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


def test_a_missing_config_json_becomes_the_published_models_in_name_order() -> None:
    merged = ovmsconfig.merge(None, ovms(), published=["b", "a"], managed=["a", "b"])
    assert merged.document == {
        "model_config_list": [
            {"config": {"name": "a", "base_path": "/models/a"}},
            {"config": {"name": "b", "base_path": "/models/b"}},
        ]
    }
    assert merged.collisions == {}


def test_new_models_come_after_the_kept_entries_with_their_settings() -> None:
    current: dict[str, Any] = {
        "model_config_list": [{"config": {"name": "a", "base_path": "/models/a"}}],
        "mediapipe_config_list": [{"name": "graph"}],
    }
    settings = OvmsConfig(
        config_path=Path("/models/config.json"),
        base_path=Path("/models"),
        model_defaults={"nireq": 4},
        models={"z": {"nireq": 8, "target_device": "GPU"}},
    )
    merged = ovmsconfig.merge(current, settings, published=["z", "a"], managed=["a", "z"])
    assert merged.document["model_config_list"] == [
        {"config": {"name": "a", "base_path": "/models/a", "nireq": 4}},
        {"config": {"name": "z", "base_path": "/models/z", "nireq": 8, "target_device": "GPU"}},
    ]
    assert merged.document["mediapipe_config_list"] == [{"name": "graph"}]
    assert current["model_config_list"][0] == {"config": {"name": "a", "base_path": "/models/a"}}, (
        "the document read from disk is not changed in place"
    )


def test_an_unmanaged_entry_of_the_agents_shape_is_left_alone() -> None:
    other = {"config": {"name": "other", "base_path": "/models/other"}}
    merged = ovmsconfig.merge({"model_config_list": [other]}, ovms(), published=[], managed=["gone"])
    assert merged.document["model_config_list"] == [other]


def stale_setup(tmp_path: Path) -> tuple[dict[str, Any], OvmsConfig]:
    for name, children in {"served": ["1"], "emptied": [], "only_staging": [".staging-2-ab12"]}.items():
        (tmp_path / name).mkdir()
        for child in children:
            (tmp_path / name / child).mkdir()
    names = ["served", "emptied", "only_staging", "never_made", "published"]
    current: dict[str, Any] = {
        "model_config_list": [{"config": {"name": n, "base_path": str(tmp_path / n)}} for n in names]
        + [{"config": {"name": "hand", "base_path": "/opt/hand"}}, {"config": "broken"}, 7]
    }
    return current, OvmsConfig(config_path=tmp_path / "config.json", base_path=tmp_path)


def test_stale_entries_are_the_agents_entries_whose_directory_has_no_version(tmp_path: Path) -> None:
    current, settings = stale_setup(tmp_path)
    stale = ovmsconfig.stale_entries(current, settings, tmp_path, published=["published"])
    # "published" has no directory here, but a published model is never looked at;
    # "hand" points elsewhere (a person's entry); malformed items are skipped, not fatal.
    assert stale == {"emptied", "only_staging", "never_made"}


def test_stale_entries_of_nothing_is_nothing(tmp_path: Path) -> None:
    assert ovmsconfig.stale_entries(None, ovms(str(tmp_path)), tmp_path, published=[]) == set()
    assert ovmsconfig.stale_entries({}, ovms(str(tmp_path)), tmp_path, published=[]) == set()


def test_stale_entries_feed_merge_which_removes_them(tmp_path: Path) -> None:
    current, settings = stale_setup(tmp_path)
    # read_current refuses a config.json with malformed items before merge sees it.
    current["model_config_list"] = [e for e in current["model_config_list"][:-2]]
    stale = ovmsconfig.stale_entries(current, settings, tmp_path, published=["published"])
    merged = ovmsconfig.merge(current, settings, published=["served", "published"], managed=stale)
    names = [e["config"]["name"] for e in merged.document["model_config_list"]]
    assert names == ["served", "published", "hand"]
