"""``.modelsync/kafka-position.json``: how far this replica has read MinIO's event topic.

``{"topic": "minio-events", "partitions": {"0": 42}}``: the next offset to read per partition.
It lives in the replica's own volume, beside its state, so nothing per replica is left on the
broker (no consumer group, no committed offsets). Replaced atomically and durably, and only
after the intents of every message before those offsets are durable: a crash re-reads at most
one batch, whose intents are idempotent.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsync import atomic

log = logging.getLogger(__name__)
FILE_NAME = "kafka-position.json"


@dataclass
class Position:
    topic: str
    partitions: dict[int, int] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {"topic": self.topic, "partitions": {str(p): o for p, o in sorted(self.partitions.items())}}


def _parse(document: Any) -> Position | None:
    if not isinstance(document, dict) or not isinstance(document.get("topic"), str):
        return None
    raw = document.get("partitions")
    if not isinstance(raw, dict):
        return None
    partitions: dict[int, int] = {}
    for name, offset in raw.items():
        if not (isinstance(name, str) and name.isdigit()) or type(offset) is not int or offset < 0:
            return None
        partitions[int(name)] = offset
    return Position(document["topic"], partitions)


def load(path: Path, topic: str) -> Position | None:
    """The stored position for ``topic``; None (with a warning) when there is none to trust.

    A missing file is a brand-new replica; an unreadable one or one for another topic is
    treated the same way (the caller records the topic's end and asks for a full reconcile,
    which is always safe).
    """
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("ignoring unreadable %s (%s): starting as a new replica", path, exc)
        return None
    position = _parse(document)
    if position is None:
        log.warning("ignoring %s: not a position document; starting as a new replica", path)
        return None
    if position.topic != topic:
        log.warning(
            "ignoring %s: it is for topic %r, not %r; starting as a new replica", path, position.topic, topic
        )
        return None
    return position


def save(path: Path, position: Position) -> None:
    """Durable before it returns (file and directory fsync'd)."""
    atomic.write_json(path, position.document())
