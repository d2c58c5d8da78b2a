"""agent.localstate.LocalState: what the agent published, kept across restarts."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from agent.localstate import STATE_VERSION, FileState, LocalState


def files(*names: str) -> dict[str, FileState]:
    return {name: FileState(etag=f"etag-{name}", size=len(name)) for name in names}


def test_a_saved_state_loads_back_the_same(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = LocalState(path)
    state.set_version("m", 2, files("model.bin", "sub/weights.bin"))
    state.set_version("m", 10, files("model.bin"))
    state.manage("claimed")
    state.save()
    loaded = LocalState.load(path)
    assert loaded.models.keys() == {"m", "claimed"}
    assert loaded.models["claimed"] == {}
    assert loaded.version("m", 2) == state.version("m", 2)
    assert loaded.version("m", 10) == state.version("m", 10)
    assert loaded.version("m", 3) is None
    assert loaded.version("nope", 1) is None
    assert not loaded.unsaved


def test_the_file_format_is_stable(tmp_path: Path) -> None:
    """state.json survives upgrades: the same keys, version numbers as strings, sorted."""
    path = tmp_path / "state.json"
    state = LocalState(path)
    state.set_version("m", 10, {"a": FileState("e1", 1)})
    state.set_version("m", 9, {"a": FileState("e2", 2)})
    state.models["m"][10].published_at = 1.5
    state.models["m"][9].published_at = 2.5
    state.save()
    document = json.loads(path.read_bytes())
    assert document == {
        "state_version": STATE_VERSION,
        "models": {
            "m": {
                "9": {"files": {"a": {"etag": "e2", "size": 2}}, "published_at": 2.5},
                "10": {"files": {"a": {"etag": "e1", "size": 1}}, "published_at": 1.5},
            }
        },
    }
    assert list(document["models"]["m"]) == ["9", "10"], "versions sorted as numbers"


def test_every_change_is_unsaved_until_saved(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "state.json")
    assert not state.unsaved
    assert state.manage("m") is True
    assert state.unsaved
    state.save()
    assert state.manage("m") is False, "already managed: no news, nothing to save"
    assert not state.unsaved
    state.set_version("m", 1, files("x"))
    assert state.unsaved
    state.save()
    state.drop_version("m", 1)
    assert state.unsaved


def test_dropping_the_last_version_forgets_the_model(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "state.json")
    state.set_version("m", 1, files("x"))
    state.set_version("m", 2, files("x"))
    state.drop_version("m", 1)
    assert state.models == {"m": {2: state.models["m"][2]}}
    state.drop_version("m", 2)
    assert state.models == {}
    state.drop_version("never", 1)  # nothing to drop: no error
    assert state.models == {}


def test_published_lists_only_models_with_versions_in_order(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "state.json")
    state.manage("empty")
    state.set_version("b", 10, files("x"))
    state.set_version("b", 9, files("x"))
    state.set_version("a", 1, files("x"))
    assert state.published() == {"a": [1], "b": [9, 10]}
    assert list(state.published()) == ["a", "b"]
    assert state.versions() == {("a", 1), ("b", 9), ("b", 10)}
    assert state.manages("empty") and state.manages("a") and not state.manages("c")


def test_signature_is_what_the_listing_is_compared_with(tmp_path: Path) -> None:
    state = LocalState(tmp_path / "state.json")
    state.set_version("m", 1, {"a": FileState("e", 3), "b/c": FileState("f", 4)})
    version = state.version("m", 1)
    assert version is not None
    assert version.signature() == frozenset({("a", "e", 3), ("b/c", "f", 4)})


def test_a_missing_state_file_is_an_empty_state(tmp_path: Path) -> None:
    state = LocalState.load(tmp_path / "absent.json")
    assert state.models == {}
    assert not state.unsaved


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[]",
        b'{"state_version": 1}',
        b'{"models": {"m": {"one": {"files": {}}}}}',
        b'{"models": {"m": {"1": {"files": {"a": {"etag": "e"}}}}}}',
        b'{"models": {"m": {"1": {"files": []}}}}',
    ],
)
def test_an_unreadable_state_file_is_an_empty_state_with_a_warning(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    """Not fatal: the reconcile rebuilds the state, reusing files on disk by checksum."""
    path = tmp_path / "state.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="agent.localstate"):
        state = LocalState.load(path)
    assert state.models == {}
    assert f"ignoring unreadable state file {path}" in caplog.text
