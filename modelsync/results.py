"""Outcomes of resync intents, for ``POST /v1/resync?wait`` and ``agent resync --wait``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from modelsync import atomic

KEEP_SECONDS = 3600.0


class ResultBox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, intent_id: str, outcome: dict[str, Any]) -> None:
        atomic.write_json(self.directory / f"{intent_id}.json", {**outcome, "finished_at": time.time()})
        self.prune()

    def prune(self) -> None:
        cutoff = time.time() - KEEP_SECONDS
        for path in self.directory.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass

    def wait(self, intent_id: str, seconds: float, poll: float = 0.05) -> dict[str, Any] | None:
        path = self.directory / f"{intent_id}.json"
        deadline = time.monotonic() + seconds
        while True:
            try:
                outcome: dict[str, Any] = json.loads(path.read_bytes())
                return outcome
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)
