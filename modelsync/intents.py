"""Writing intent files: the webhook's only output (and what ``agent resync`` drops in).

``write_all`` returns only once every intent is durable (fsync of each file and of the
directory): the webhook answers MinIO 2xx after it, so an acknowledged event survives a
crash of the process or the host. The agent reads intents on its own, against the schema.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from modelsync import atomic, schema

INTENT_VERSION = 1


def new_intent_id() -> str:
    # Nanosecond time first, so a directory listing sorts intents by arrival.
    return f"{time.time_ns():019d}-{secrets.token_hex(6)}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class IntentWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def new(self, kind: str, **fields: Any) -> dict[str, Any]:
        intent = {
            "intent_version": INTENT_VERSION,
            "id": new_intent_id(),
            "kind": kind,
            "created_at": now_iso(),
            **fields,
        }
        # The schema is the contract with the agent: never hand it something it would refuse.
        schema.check(schema.INTENT, intent)
        return intent

    def write_all(self, intents: Iterable[dict[str, Any]]) -> list[str]:
        ids = []
        for intent in intents:
            target = self.directory / f"{intent['id']}.json"
            data = json.dumps(intent, separators=(",", ":")).encode()
            # One directory fsync for the whole request instead of one per file.
            atomic.write_bytes(target, data, durable=False)
            self._fsync_file(target)
            ids.append(intent["id"])
        if ids:
            atomic.fsync_dir(self.directory)
        return ids

    @staticmethod
    def _fsync_file(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def writable(self) -> bool:
        return self.directory.is_dir() and os.access(self.directory, os.W_OK | os.X_OK)
