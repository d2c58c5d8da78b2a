"""Group commit of the webhook's intents, and the batch document (intent version 2).

Every request used to pay for its own intent file: create, write, fsync, rename, and a share
of a directory fsync. Under concurrency that file work (most of it kernel time) cost more CPU
than the rest of the request. Here the requests that arrive while a commit is running wait
for the next one, and that one makes all of their intents durable at once. A request is
answered only after the commit holding its intents is durable.

Since intent version 3 a commit is one frame of the process's intent log
(``modelsync/intentlog.py``), one synchronous write and no new file: a single intent as its
version-1 document, several as one version-2 batch (``schemas/intent-batch.schema.json``).
Files are still written, version-1 each, for a resync (see :meth:`GroupCommit._write`) and
for a commit too large for a segment. A webhook older than version 3 wrote the batch as a
file, ``<id>.batch.json``; the agent still reads those (:func:`parse_batch`,
``agent/inbox.py``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict, cast

from modelsync import atomic, intents, schema
from modelsync.errors import IntentError, SchemaViolation
from modelsync.intentlog import IntentLog
from modelsync.intents import Intent

BATCH_VERSION = 2
BATCH_SUFFIX = ".batch.json"
# Bounds one batch: the agent holds it in memory until each of its intents is done.
MAX_BATCH_INTENTS = 4096
MAX_BATCH_BYTES = 32 * 1024 * 1024


class Batch(TypedDict):
    intent_version: int
    id: str
    created_at: str
    intents: list[Intent]


def batch_document(items: Sequence[Intent]) -> Batch:
    return {
        "intent_version": BATCH_VERSION,
        "id": intents.new_intent_id(),
        "created_at": intents.now_iso(),
        "intents": list(items),
    }


def parse_batch(document: object) -> Batch:
    """A batch file's document, every member checked as a version-1 intent; IntentError if not."""
    try:
        schema.check(schema.INTENT_BATCH, document)
    except SchemaViolation as exc:
        raise IntentError(f"invalid intent batch: {exc}") from None
    batch = cast(Batch, document)
    seen: set[str] = set()
    for index, member in enumerate(batch["intents"]):
        try:
            intent = intents.parse(member)
        except IntentError as exc:
            raise IntentError(f"intents[{index}]: {exc}") from None
        if intent["id"] in seen:
            raise IntentError(f"intents[{index}]: id {intent['id']!r} appears twice")
        seen.add(intent["id"])
    return batch


@dataclass
class _Waiter:
    intents: Sequence[Intent]
    done: bool = False
    error: BaseException | None = field(default=None)


class GroupCommit:
    """Leader/follower group commit: whoever finds no commit running writes everything queued.

    ``check`` runs before anything is written to a new place (a new log segment, or files):
    the state directory must still be a real directory. An error of it, or of the writing,
    fails every request of that commit and no other.
    """

    def __init__(
        self, directory: Path, check: Callable[[], None] = lambda: None, log: IntentLog | None = None
    ) -> None:
        self.directory = directory
        self.check = check
        self.log = log or IntentLog(directory)
        self._cond = threading.Condition()
        self._queue: list[_Waiter] = []
        self._running = False
        self.commits = 0  # for tests and benchmarks: intents per commit = accepted / commits

    def commit(self, items: Sequence[Intent]) -> None:
        """Returns once ``items`` are durable (their frame's synchronous write returned, and
        for resyncs or a commit too large for a segment, the files and the directory fsynced)."""
        if not items:
            return
        me = _Waiter(items)
        with self._cond:
            self._queue.append(me)
            while not me.done:
                if self._running:
                    self._cond.wait()
                    continue
                self._lead()
        if me.error is not None:
            raise me.error

    def _lead(self) -> None:
        """Called holding the lock; writes a group without it."""
        group = self._take()
        self._running = True
        self._cond.release()
        error: BaseException | None = None
        try:
            self._write([intent for waiter in group for intent in waiter.intents])
        except BaseException as exc:  # every waiter of this group gets it, the leader raises it
            error = exc
        finally:
            self._cond.acquire()
            self._running = False
            self.commits += 1
            for waiter in group:
                waiter.done, waiter.error = True, error
            self._cond.notify_all()

    def _take(self) -> list[_Waiter]:
        """The queued requests, up to MAX_BATCH_INTENTS intents (always at least one request)."""
        count, taken = 0, 0
        for waiter in self._queue:
            if taken and count + len(waiter.intents) > MAX_BATCH_INTENTS:
                break
            count += len(waiter.intents)
            taken += 1
        group, self._queue = self._queue[:taken], self._queue[taken:]
        return group

    def _write(self, items: list[Intent]) -> None:
        # A resync goes to a file of its own: it is rare, and costly to repeat (a full
        # reconcile). A file is deleted once done; a frame stays in its segment until the
        # worker ends, and an agent restarted meanwhile would run the resync again.
        logged = [intent for intent in items if intent["kind"] != "resync"]
        files = [intent for intent in items if intent["kind"] == "resync"]
        if 0 < len(logged) <= MAX_BATCH_INTENTS:
            payload = _dumps(batch_document(logged) if len(logged) > 1 else logged[0])
            if self.log.fits(len(payload)):
                self.log.append(payload, before_open=self.check)
                logged = []
        if logged or files:  # larger than a segment, or resyncs: version-1 files, as ever
            self.check()
            for intent in logged + files:
                intents.write_synced(self.directory / f"{intent['id']}.json", _dumps(intent))
            atomic.fsync_dir(self.directory)


def _dumps(document: object) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()
