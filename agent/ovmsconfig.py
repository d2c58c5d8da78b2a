"""Merging the agent's models into OVMS's config.json, validating, swapping atomically.

Entries for models the agent manages are added, updated or removed; everything else in the
file (hand-written models, pipelines, mediapipe graphs, monitoring) is kept as it was, even
when a bucket model has the name of a hand-written model entry (a collision, reported). The
result must pass the OVMS schema before it replaces the file; an unchanged result is not
written, so OVMS (which hashes the file) is not made to reload for nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelsync import atomic, fastschema, schema
from modelsync.config import OvmsConfig, thaw
from modelsync.errors import OvmsConfigError, SchemaViolation

log = logging.getLogger(__name__)


def read_current(path: Path) -> tuple[dict[str, Any] | None, bytes | None]:
    """The config on disk and its bytes; (None, None) when there is none.

    Raises OvmsConfigError when it is broken: the agent never overwrites what it cannot parse.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        raise OvmsConfigError(f"cannot read {path}: {exc.strerror}") from None
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise OvmsConfigError(f"{path} is not valid JSON ({exc}); leaving it untouched") from None
    problem = _shape_problem(document)
    if problem:
        raise OvmsConfigError(f"{path}: {problem}; leaving it untouched")
    return document, data


def _shape_problem(document: Any) -> str | None:
    """What keeps the merge from reading this document (the rest is the schema's business)."""
    if not isinstance(document, dict):
        return "top level is not an object"
    entries = document.get("model_config_list", [])
    if not isinstance(entries, list):
        return "model_config_list is not a list"
    for index, item in enumerate(entries):
        config = item.get("config") if isinstance(item, dict) else None
        if not isinstance(config, dict) or not isinstance(config.get("name"), str):
            return f'model_config_list[{index}] is not {{"config": {{"name": ...}}}}'
    return None


def entry_for(ovms: OvmsConfig, model: str) -> dict[str, Any]:
    return {
        "config": {"name": model, "base_path": str(ovms.base_path / model), **thaw(ovms.settings_for(model))}
    }


@dataclass(frozen=True)
class Merged:
    document: dict[str, Any]
    # Published models not entered because a hand-written entry has the name: name -> its base_path
    collisions: dict[str, str]


def hand_written(current: dict[str, Any] | None, ovms: OvmsConfig) -> dict[str, str]:
    """Model entries the agent did not write, by name, with their base_path.

    The agent writes ``base_path: <ovms.base_path>/<name>``; any other base_path is someone
    else's entry (the rule :func:`stale_entries` uses too, so it needs no memory of its own).
    """
    found = {}
    for item in (current or {}).get("model_config_list") or []:
        config = item.get("config") if isinstance(item, dict) else None
        if not isinstance(config, dict) or not isinstance(config.get("name"), str):
            continue
        if config.get("base_path") != str(ovms.base_path / config["name"]):
            found[config["name"]] = str(config.get("base_path"))
    return found


def merge(
    current: dict[str, Any] | None,
    ovms: OvmsConfig,
    published: Iterable[str],
    managed: Iterable[str],
) -> Merged:
    """The new document: ``published`` models present, other ``managed`` ones gone.

    A hand-written entry is never replaced nor removed: a published model of the same name is
    left out and reported as a collision until the operator removes the entry or renames one.
    """
    document = dict(current or {})
    foreign = hand_written(current, ovms)
    names = set(published)
    collisions = {m: foreign[m] for m in sorted(names & set(foreign))}
    wanted = {m: entry_for(ovms, m) for m in sorted(names - set(foreign))}
    ours = (set(managed) | set(wanted)) - set(foreign)
    entries = []
    for item in document.get("model_config_list") or []:
        name = item.get("config", {}).get("name") if isinstance(item, dict) else None
        if name in foreign and item["config"].get("base_path") == str(ovms.base_path / name):
            continue  # the agent's own entry beside a hand-written one: OVMS takes one name once
        if name in ours:
            if name in wanted:
                entries.append(wanted.pop(name))  # keep its place in the list
            continue
        entries.append(item)
    entries.extend(wanted.values())
    document["model_config_list"] = entries
    return Merged(document, collisions)


def stale_entries(
    current: dict[str, Any] | None, ovms: OvmsConfig, models_path: Path, published: Collection[str]
) -> set[str]:
    """Entries pointing at a model directory of ours that holds no version any more.

    Covers a model whose last version was just removed and one a crash left behind. Models
    in ``published`` have versions by definition, so only the others cost a directory look.
    """
    stale = set()
    for item in (current or {}).get("model_config_list") or []:
        config = item.get("config") if isinstance(item, dict) else None
        if not isinstance(config, dict) or not isinstance(config.get("name"), str):
            continue
        name = config["name"]
        if name in published or config.get("base_path") != str(ovms.base_path / name):
            continue
        if not _has_versions(models_path / name):
            stale.add(name)
    return stale


def _has_versions(model_dir: Path) -> bool:
    try:
        return any(entry.name.isdigit() for entry in model_dir.iterdir())
    except OSError:
        return False


def render(document: dict[str, Any]) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def swap_if_changed(path: Path, document: dict[str, Any], on_disk: bytes | None) -> bool:
    """Validate and atomically replace ``path``; False when the content would not change.

    ``on_disk`` is what :func:`read_current` read, so an unchanged result costs no schema
    check (with a thousand models, the check is most of the cost of a swap).
    """
    data = render(document)
    if data == on_disk:
        return False
    try:
        fastschema.check(schema.OVMS_CONFIG, document)
    except SchemaViolation as exc:
        raise OvmsConfigError(f"refusing to write {path}: OVMS would reject it: {exc}") from None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(path, data)
    except OSError as exc:
        raise OvmsConfigError(f"cannot write {exc.filename or path}: {exc.strerror}") from None
    return True


def remove_temp_files(path: Path) -> None:
    """Temp files of an interrupted swap (they are hidden, but should not pile up)."""
    if path.parent.is_dir():
        for leftover in path.parent.glob(f".{path.name}.tmp-*"):
            leftover.unlink(missing_ok=True)
