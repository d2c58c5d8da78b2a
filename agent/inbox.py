"""Reading intent files and intent log segments, trusting none of them.

Every file is checked against ``intent.schema.json`` and against the agent's own reading of
its key (a hand-dropped intent cannot name a path the key does not). A file that fails moves
to ``.modelsync/failed/`` with the reason. Intents are deleted only once their work is done.

Files of two versions are read: one intent per ``<id>.json`` (version 1), and the group
commits of a webhook older than version 3, ``<id>.batch.json`` (version 2,
``modelsync/intentbatch.py``), whose intents are held in memory and handled one by one like
version-1 files; the batch file is deleted once every one of them is done or failed. After a
crash a batch is read again whole: the intents already done are cheap to repeat (an applied
version is recognised and committed at once).

Version 3 is the webhook's intent log, ``<id>.intentlog`` (``agent/segments.py``): its
frames' intents are held the same way, and the segment is deleted once its writer is gone
and every one of them is done or failed. A link, FIFO or directory in a segment's place moves
to failed/ like a bad file; a refused frame is recorded there as ``<segment>@<offset>``. An id
read again while held is handled again after it, never dropped: a planted copy of an
acknowledged intent's id cannot displace it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from agent import metrics, segments
from agent.segments import BadFrame, Cursor
from modelsync import atomic, intentbatch, intents, keys
from modelsync.config import Config
from modelsync.errors import IntentError, UnsafeKeyError
from modelsync.intentbatch import BATCH_SUFFIX, MAX_BATCH_BYTES
from modelsync.intentlog import SEGMENT_SUFFIX, NotASegment
from modelsync.intents import Intent, ObjectIntent

log = logging.getLogger(__name__)
MAX_INTENT_BYTES = 64 * 1024


class Inbox:
    def __init__(self, config: Config) -> None:
        self.directory = config.intents_dir
        self.failed_dir = config.failed_dir
        self.bucket = config.minio.bucket
        self.single_model = config.ovms.model_name
        # Intents that could not be moved to failed/ (it is not writable, or a file is in the
        # way): id -> reason. They are not read again; retry_moves() tries once a step.
        self.unmoved: dict[str, str] = {}
        self.move_error = ""
        # Version-2 files and version-3 segments read so far: file name -> ids not yet done;
        # id -> (file name, intent); segment name -> how far it has been read.
        self.batches: dict[str, set[str]] = {}
        self.members: dict[str, tuple[str, Intent]] = {}
        self.segments: dict[str, Cursor] = {}
        # An id read again while held (a planted copy reusing a real intent's id): its later
        # copies, handled one by one after it, so a copy read first cannot displace the real one.
        self.queued: dict[str, list[tuple[str, Intent]]] = {}
        self.unreadable: set[str] = set()  # segments whose read failed, reported once
        # Refused frames failed/ could not take yet: frame name -> (segment name, frame). Each
        # holds its segment (as an intent would) until retry_moves() records it.
        self.unrecorded: dict[str, tuple[str, BadFrame]] = {}

    def names(self) -> Iterator[str]:
        """Intent ids waiting, oldest first (ids start with the arrival time)."""
        with os.scandir(self.directory) as entries:
            listed = [e.name for e in entries if _is_intent_name(e.name)]
        batch_files = {name for name in listed if name.endswith(BATCH_SUFFIX)}
        segment_files = {name for name in listed if name.endswith(SEGMENT_SUFFIX)}
        for name in (set(self.batches) | set(self.segments)) - batch_files - segment_files:
            self._forget_batch(name)  # removed by hand: nothing left to do
        for name in sorted(batch_files - set(self.batches) - set(self.unmoved)):
            self._open_batch(name)
        for name in sorted(segment_files - set(self.unmoved)):
            self._read_segment(name)
        found = {name[:-5] for name in listed if name.endswith(".json") and name not in batch_files}
        found.update(self.members)
        return iter(sorted(i for i in found if i not in self.unmoved))

    def read(self, intent_id: str) -> Intent:
        member = self.members.get(intent_id)
        intent = member[1] if member is not None else intents.parse(self._load(f"{intent_id}.json"))
        if intent["id"] != intent_id:
            raise IntentError(f"id {intent['id']!r} does not match the file name")
        if intent["kind"] == "object":
            self._check_object(intent)
        return intent

    def _load(self, name: str, limit: int = MAX_INTENT_BYTES) -> object:
        path = self.directory / name
        try:
            info = os.lstat(path)
            if not stat.S_ISREG(info.st_mode):
                raise IntentError("not a regular file")
            if info.st_size > limit:
                raise IntentError(f"larger than {limit} bytes")
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as handle:
                document: object = json.loads(handle.read(limit + 1))
        except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
            raise IntentError(f"unreadable: {exc}") from None
        return document

    def _open_batch(self, name: str) -> None:
        """Hold a batch file's intents; a batch that cannot be read moves to failed/ whole."""
        try:
            batch = intentbatch.parse_batch(self._load(name, MAX_BATCH_BYTES))
            if f"{batch['id']}{BATCH_SUFFIX}" != name:
                raise IntentError(f"id {batch['id']!r} does not match the file name")
        except IntentError as exc:
            self.fail(name, str(exc))
            return
        self.batches[name] = set()
        for intent in batch["intents"]:
            self._hold(name, intent)
        self._delete_if_done(name)

    def _read_segment(self, name: str) -> None:
        cursor = self.segments.setdefault(name, Cursor())
        try:
            for item in segments.read_new(self.directory / name, cursor):
                if isinstance(item, BadFrame):
                    self._fail_frame(name, item)
                else:
                    self._hold(name, item)
        except NotASegment as exc:  # a link, FIFO or directory: recorded and removed like a file
            self._forget_batch(name)
            self.fail(name, str(exc))
            return
        except OSError as exc:
            if name not in self.unreadable:
                self.unreadable.add(name)
                log.error("intent log %s cannot be read: %s", name, exc)
            return
        self.unreadable.discard(name)
        self._delete_if_done(name)

    def _hold(self, name: str, intent: Intent) -> None:
        self.batches.setdefault(name, set()).add(intent["id"])
        if intent["id"] in self.members:
            self.queued.setdefault(intent["id"], []).append((name, intent))
        else:
            self.members[intent["id"]] = (name, intent)

    def _promote(self, intent_id: str) -> None:
        """The next copy of an id whose held one is done or forgotten becomes the held one."""
        later = self.queued.pop(intent_id, [])
        if later:
            name, intent = later.pop(0)
            self.members[intent_id] = (name, intent)
            self.batches.setdefault(name, set()).add(intent_id)
            if later:
                self.queued[intent_id] = later

    def _fail_frame(self, segment: str, frame: BadFrame) -> None:
        try:
            self._record_failure(frame.name, frame.reason, frame.content)
        except OSError as exc:  # kept, and its segment with it, until retry_moves() records it
            self.move_error = f"{type(exc).__name__}: {exc}"
            if frame.name not in self.unrecorded:
                log.error(
                    "intent log frame %s cannot be recorded in %s: %s", frame.name, self.failed_dir, exc
                )
            self.unrecorded[frame.name] = (segment, frame)
            self.batches.setdefault(segment, set()).add(frame.name)
            return
        if self.unrecorded.pop(frame.name, None) is not None:
            self.batches.get(segment, set()).discard(frame.name)
            self._delete_if_done(segment)
        metrics.FAILURES.labels(reason="intent").inc()
        log.error("intent log frame %s moved to %s: %s", frame.name, self.failed_dir, frame.reason)

    def _forget_batch(self, name: str) -> None:
        self.segments.pop(name, None)
        self.unreadable.discard(name)
        for intent_id in self.batches.pop(name, set()):
            if intent_id in self.queued:
                self.queued[intent_id] = [held for held in self.queued[intent_id] if held[0] != name]
            if self.members.get(intent_id, ("", None))[0] == name:
                del self.members[intent_id]
                self._promote(intent_id)
            if not self.queued.get(intent_id, True):
                del self.queued[intent_id]

    def _member_done(self, intent_id: str) -> None:
        name = self.members.pop(intent_id)[0]
        self.batches.get(name, set()).discard(intent_id)
        self._promote(intent_id)
        self._delete_if_done(name)

    def _delete_if_done(self, name: str) -> None:
        """A batch file once every intent is done; a segment only once its writer is gone too."""
        cursor = self.segments.get(name)
        if self.batches.get(name) or (cursor is not None and not cursor.finished):
            return
        self._forget_batch(name)
        (self.directory / name).unlink(missing_ok=True)

    def _check_object(self, intent: ObjectIntent) -> None:
        if intent["bucket"] != self.bucket:
            raise IntentError(f"bucket {intent['bucket']!r} is not {self.bucket!r}")
        try:
            ref = keys.parse_key(intent["key"], self.single_model)
        except UnsafeKeyError as exc:
            raise IntentError(str(exc)) from None
        if ref is None or (ref.model, ref.version, ref.path) != (
            intent["model"],
            intent["version"],
            intent["path"],
        ):
            raise IntentError("model/version/path do not match the key")

    def done(self, intent_id: str) -> None:
        if intent_id in self.members:
            self._member_done(intent_id)
        else:
            (self.directory / f"{intent_id}.json").unlink(missing_ok=True)

    def fail(self, intent_id: str, reason: str) -> None:
        """Move an intent (or a whole batch file, by its file name) to failed/ with its reason;
        never raises (see :meth:`retry_moves`)."""
        try:
            self._move(intent_id, reason)
        except Exception as exc:  # a failed/ that cannot take it must not stop the intake
            self.move_error = f"{type(exc).__name__}: {exc}"
            if intent_id not in self.unmoved:
                log.error("intent %s cannot be moved to %s (%s): %s", intent_id, self.failed_dir, exc, reason)
            self.unmoved[intent_id] = reason
            return
        self.unmoved.pop(intent_id, None)
        metrics.FAILURES.labels(reason="intent").inc()
        log.error("intent %s moved to %s: %s", intent_id, self.failed_dir, reason)

    def retry_moves(self) -> None:
        """Raises IntentError while an intent could still not be moved (the step is failing)."""
        for intent_id, reason in list(self.unmoved.items()):
            self.fail(intent_id, reason)
        for segment, frame in list(self.unrecorded.values()):
            self._fail_frame(segment, frame)
        if self.unmoved or self.unrecorded:
            count = len(self.unmoved) + len(self.unrecorded)
            raise IntentError(f"cannot move {count} intent(s) to {self.failed_dir}: {self.move_error}")

    def _move(self, intent_id: str, reason: str) -> None:
        member = self.members.get(intent_id)
        is_file = intent_id.endswith((BATCH_SUFFIX, SEGMENT_SUFFIX))  # a batch or segment by name
        source = self.directory / (intent_id if is_file else f"{intent_id}.json")
        raw = json.dumps(member[1]) if member is not None else _read_regular(source)
        self._record_failure(intent_id, reason, raw)
        if member is not None:
            self._member_done(intent_id)
            return
        try:
            source.unlink(missing_ok=True)
        except IsADirectoryError:
            shutil.rmtree(source, ignore_errors=True)  # never follows links inside it

    def _record_failure(self, name: str, reason: str, content: str) -> None:
        """``failed/<name>.json``: what could not be used, why, and what it said."""
        self.failed_dir.mkdir(parents=True, exist_ok=True)
        safe_name = name if len(name) < 200 else name[:200]
        atomic.write_json(
            self.failed_dir / (safe_name if safe_name.endswith(".json") else f"{safe_name}.json"),
            {"id": name, "error": reason, "failed_at": time.time(), "content": content},
        )


def _is_intent_name(name: str) -> bool:
    return not name.startswith(".") and name.endswith((".json", SEGMENT_SUFFIX))


def _read_regular(path: Path) -> str:
    """At most MAX_INTENT_BYTES of a regular file; "" for a link, pipe, device or directory.

    Opened non-blocking and without following links: a planted FIFO must not hang the agent.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return ""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return ""
        return os.read(fd, MAX_INTENT_BYTES).decode("utf-8", "replace")
    except OSError:
        return ""
    finally:
        os.close(fd)
