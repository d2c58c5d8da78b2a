"""What the agent has published on disk, so that a restart downloads nothing unchanged.

``.modelsync/state.json``::

    {"state_version": 1,
     "models": {"<model>": {"<version>": {"files": {"<path>": {"etag": "...", "size": 1}},
                                          "published_at": 1700000000.0}}}}

A model is listed (possibly with no versions) from before its first version is renamed into
place, so that after a crash the agent knows which version directories are its own.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsync import atomic

log = logging.getLogger(__name__)
STATE_VERSION = 1


@dataclass(frozen=True)
class FileState:
    etag: str
    size: int


@dataclass
class VersionState:
    files: dict[str, FileState]
    published_at: float = field(default_factory=time.time)

    def signature(self) -> frozenset[tuple[str, str, int]]:
        return frozenset((p, f.etag, f.size) for p, f in self.files.items())


class LocalState:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.models: dict[str, dict[int, VersionState]] = {}
        self.unsaved = False  # changed since the last successful save

    @classmethod
    def load(cls, path: Path) -> LocalState:
        state = cls(path)
        try:
            raw: dict[str, Any] = json.loads(path.read_bytes())
            state.models = _parse_models(raw["models"])
        except FileNotFoundError:
            return state
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # Not fatal: the reconcile rebuilds it, reusing files on disk by checksum.
            log.warning("ignoring unreadable state file %s: %s", path, type(exc).__name__)
            state.models = {}
        return state

    def save(self) -> None:
        document = {
            "state_version": STATE_VERSION,
            "models": {
                model: {
                    str(v): {
                        "files": {p: {"etag": f.etag, "size": f.size} for p, f in vs.files.items()},
                        "published_at": vs.published_at,
                    }
                    for v, vs in sorted(versions.items())
                }
                for model, versions in sorted(self.models.items())
            },
        }
        atomic.write_json(self.path, document)
        self.unsaved = False

    def version(self, model: str, version: int) -> VersionState | None:
        return self.models.get(model, {}).get(version)

    def versions(self) -> set[tuple[str, int]]:
        """Every (model, version) the agent has published."""
        return {(m, v) for m, vs in self.models.items() for v in vs}

    def manages(self, model: str) -> bool:
        """The agent owns this model (listed from before its first version is in place)."""
        return model in self.models

    def manage(self, model: str) -> bool:
        """Record that the agent owns this model; True when that is news."""
        if model in self.models:
            return False
        self.unsaved = True
        self.models[model] = {}
        return True

    def set_version(self, model: str, version: int, files: dict[str, FileState]) -> None:
        self.models.setdefault(model, {})[version] = VersionState(files)
        self.unsaved = True

    def drop_version(self, model: str, version: int) -> None:
        versions = self.models.get(model, {})
        versions.pop(version, None)
        self.unsaved = True
        if not versions:
            self.models.pop(model, None)

    def published(self) -> dict[str, list[int]]:
        """Models with at least one version on disk, and their versions."""
        return {m: sorted(vs) for m, vs in sorted(self.models.items()) if vs}


def _parse_models(raw: dict[str, Any]) -> dict[str, dict[int, VersionState]]:
    return {
        str(model): {
            int(v): VersionState(
                files={str(p): FileState(str(f["etag"]), int(f["size"])) for p, f in vs["files"].items()},
                published_at=float(vs.get("published_at", 0)),
            )
            for v, vs in versions.items()
        }
        for model, versions in raw.items()
    }
