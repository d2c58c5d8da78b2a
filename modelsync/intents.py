"""The intent (version 1) and writing it as a file.

Files are what ``agent resync`` and the fleet's event reader drop in, and what the webhook
writes for a resync or a commit too large for its intent log (``modelsync/intentbatch.py``;
its other intents go to the log, ``modelsync/intentlog.py``). ``write_all`` returns only once
every intent is durable (fsync of each file and of the directory), so an intent acknowledged
after it survives a crash of the process or the host. The agent reads intents on its own,
against the schema.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NotRequired, TypedDict, Unpack, cast, overload

from modelsync import atomic, fastschema, schema
from modelsync.errors import IntentError, SchemaViolation

INTENT_VERSION = 1
IntentKind = Literal["object", "resync"]


class ObjectFields(TypedDict):
    """What one bucket record says, with its key already parsed (``webhook/records.py``)."""

    action: Literal["put", "delete"]
    event_name: str
    bucket: str
    key: str
    model: str
    version: int
    path: str
    etag: NotRequired[str]
    size: NotRequired[int]
    sequencer: NotRequired[str]
    event_time: NotRequired[str]


class ResyncFields(TypedDict, total=False):
    """The whole bucket, one model, or one version of it (``version`` needs ``model``)."""

    model: str
    version: int


class _Header(TypedDict):
    intent_version: int
    id: str
    created_at: str


class ObjectIntent(_Header, ObjectFields):
    kind: Literal["object"]


class ResyncIntent(_Header, ResyncFields):
    kind: Literal["resync"]


# One intent file as ``schemas/intent.schema.json`` describes it; ``kind`` tells them apart.
Intent = ObjectIntent | ResyncIntent


def parse(document: object) -> Intent:
    """The one way from a JSON document to an :data:`Intent`: the schema, then integer checks.

    Raises IntentError saying what is wrong. Checked by the schema, the cast is true.
    """
    try:
        schema.check(schema.INTENT, document)
    except SchemaViolation as exc:
        raise IntentError(f"invalid intent: {exc}") from None
    intent = cast(Intent, document)
    # JSON Schema draft 7 counts 1.0 as an integer; a path or prefix built from it would not.
    for field in ("intent_version", "version"):
        value = cast(dict[str, object], intent).get(field)
        if value is not None and type(value) is not int:
            raise IntentError(f"invalid intent: {field}: expected an integer, got {value!r}")
    return intent


def new_intent_id() -> str:
    # Nanosecond time first, so a directory listing sorts intents by arrival. The suffix only
    # has to be unique, not secret: ``random`` (reseeded in every forked worker) takes no
    # system call, where ``secrets`` would release the GIL to a waiting thread per event.
    return f"{time.time_ns():019d}-{random.getrandbits(48):012x}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_synced(target: Path, data: bytes) -> None:
    """The file is complete on disk before its name appears; the caller fsyncs the directory.

    Never reopened by name after the rename: the agent may have read and deleted it by then
    (a duplicate event is committed at once), and that must not fail the request.
    """
    atomic.write_bytes(target, data, sync_dir=False)


class IntentWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    @overload
    def new(self, kind: Literal["object"], **fields: Unpack[ObjectFields]) -> ObjectIntent: ...
    @overload
    def new(self, kind: Literal["resync"], **fields: Unpack[ResyncFields]) -> ResyncIntent: ...
    def new(self, kind: IntentKind, **fields: object) -> Intent:
        intent = {
            "intent_version": INTENT_VERSION,
            "id": new_intent_id(),
            "kind": kind,
            "created_at": now_iso(),
            **fields,
        }
        # The schema is the contract with the agent: never hand it something it would refuse.
        fastschema.check(schema.INTENT, intent)
        return cast(Intent, intent)

    def write_all(self, intents: Iterable[Intent]) -> list[str]:
        """Version-1 files, then one directory fsync for all of them.

        For writers that hand over a few intents at a time (``agent resync``, the fleet's
        event reader, tests); the webhook's concurrent requests go through its group commit
        and intent log instead (``modelsync/intentbatch.py``).
        """
        ids = []
        for intent in intents:
            data = json.dumps(intent, separators=(",", ":")).encode()
            write_synced(self.directory / f"{intent['id']}.json", data)
            ids.append(intent["id"])
        if ids:
            atomic.fsync_dir(self.directory)
        return ids

    def writable(self) -> bool:
        return self.directory.is_dir() and os.access(self.directory, os.W_OK | os.X_OK)
