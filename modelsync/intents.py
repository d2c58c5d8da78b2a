"""Writing intent files: the webhook's only output (and what ``agent resync`` drops in).

``write_all`` returns only once every intent is durable (fsync of each file and of the
directory): the webhook answers MinIO 2xx after it, so an acknowledged event survives a
crash of the process or the host. The agent reads intents on its own, against the schema.
"""

from __future__ import annotations

import json
import os
import secrets
import threading
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
    # Nanosecond time first, so a directory listing sorts intents by arrival.
    return f"{time.time_ns():019d}-{secrets.token_hex(6)}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def write_synced(target: Path, data: bytes) -> None:
    """The file is complete on disk before its name appears; the directory fsync is grouped.

    Never reopened by name after the rename: the agent may have read and deleted it by then
    (a duplicate event is committed at once), and that must not fail the request.
    """
    atomic.write_bytes(target, data, sync_dir=False)


class GroupSync:
    """One directory fsync shared by every thread that asked for it meanwhile (group commit).

    A caller that renamed its file into the directory calls :meth:`sync`; it returns once an
    fsync of the directory that *started after* the call has finished. While one fsync runs,
    later callers queue up and the next fsync covers them all, so N concurrent requests cost
    about two directory fsyncs instead of N, and nobody returns before their rename is durable.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._cond = threading.Condition()
        self._requested = 0  # tickets handed out
        self._synced = 0  # every ticket up to this one is durable
        self._running = False
        self.fsyncs = 0

    def sync(self) -> None:
        with self._cond:
            self._requested += 1
            ticket = self._requested
            while self._synced < ticket:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                covers = self._requested  # every rename before this point is in this fsync
                self._cond.release()
                try:
                    atomic.fsync_dir(self.directory)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
                self._synced = max(self._synced, covers)
                self.fsyncs += 1


class IntentWriter:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.group = GroupSync(directory)

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
        ids = []
        for intent in intents:
            data = json.dumps(intent, separators=(",", ":")).encode()
            write_synced(self.directory / f"{intent['id']}.json", data)
            ids.append(intent["id"])
        if ids:
            # One directory fsync for the whole request instead of one per file, shared with
            # the requests of other threads that are waiting for one at the same time.
            self.group.sync()
        return ids

    def writable(self) -> bool:
        return self.directory.is_dir() and os.access(self.directory, os.W_OK | os.X_OK)
