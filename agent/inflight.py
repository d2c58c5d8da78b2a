"""Versions being renamed into place, recorded before the rename.

If the agent dies after a rename and before the state records the version, the next start
finds the version here and knows the directory is its own: the reconcile then adopts it
(files reused by checksum) or removes it (gone from the bucket). A numbered directory the
agent never recorded (placed by hand) is never touched. The file stays tiny: one entry per
version in flight, removed once the state is saved.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from modelsync import atomic

log = logging.getLogger(__name__)


class InFlight:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: set[tuple[str, int]] = set()
        try:
            raw = json.loads(path.read_bytes())
            self.entries = {(str(m), int(v)) for m, v in raw}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, TypeError) as exc:
            log.warning("ignoring unreadable %s: %s", path, type(exc).__name__)

    def versions(self) -> frozenset[tuple[str, int]]:
        return frozenset(self.entries)

    def add(self, model: str, version: int) -> None:
        self.entries.add((model, version))
        self._write()

    def discard(self, model: str, version: int) -> None:
        if (model, version) in self.entries:
            self.entries.discard((model, version))
            self._write()

    def _write(self) -> None:
        atomic.write_json(self.path, sorted(self.entries))
