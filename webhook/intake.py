"""What ``POST /minio/events`` does with a body, without Flask: the answer and its effects.

Both ways in call :meth:`Intake.answer`: the Flask view (``webhook/events.py``) and the direct
route below Flask (``webhook/direct.py``), which serves MinIO's ordinary posts. So every
outcome (200 once every accepted record is a durable intent, 400, 422, 503), its metric and
its log line have one implementation, whichever way the request came. A new check of the body
or of its records belongs in :meth:`Intake.answer`: most posts never reach the Flask view.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from modelsync import notifications
from modelsync.config import Config
from modelsync.errors import ConfigError
from modelsync.intents import Intent, IntentWriter
from modelsync.web import error_document
from webhook import metrics
from webhook.body import BadBody, parse_json

log = logging.getLogger(__name__)

# An unsafe key is a request we understood and refuse (422); the rest is malformed (400).
_STATUS = {notifications.Refusal.UNSAFE_KEY: 422}


@dataclass(frozen=True)
class Answer:
    """An HTTP status and its JSON document, for either way in to render."""

    status: int
    document: dict[str, object]


class IntentsUnavailable(Exception):
    """The intents directory cannot take the request's intents now (missing, not writable, or
    made a symbolic link since start-up)."""


class Commit(Protocol):
    """What :class:`Intake` needs of ``modelsync.intentbatch.GroupCommit``: ``commit`` returns
    once ``items`` are durable. A protocol so ``bench/nowrite_app.py`` can put one that writes
    nothing in its place."""

    def commit(self, items: Sequence[Intent]) -> None: ...


class Intake:
    """The webhook's one writer of intents: events and resyncs go through :meth:`write`."""

    def __init__(self, settings: Config, writer: IntentWriter, group: Commit) -> None:
        self.settings = settings
        self.writer = writer
        self.group = group

    def answer(self, data: bytes) -> Answer:
        """The answer to a MinIO notification body; its intents are durable before a 200."""
        try:
            body = parse_json(data)
        except BadBody as exc:
            metrics.REJECTED.labels(reason="bad_json").inc()
            fields = {} if exc.field is None else {"field": exc.field}
            return Answer(400, error_document(str(exc), **fields))
        try:
            records = notifications.records_of(body)
            metrics.RECEIVED.inc(len(records))
            decided = notifications.decide(records, self.settings, self.writer)
        except notifications.Refused as exc:
            return _refused(exc)
        try:
            ids = self.write(decided.intents)
        except IntentsUnavailable as exc:
            return Answer(503, error_document(str(exc)))  # not the client's fault: MinIO sends it again
        if ids:
            metrics.ACCEPTED.inc(len(ids))
        for reason in decided.ignored:
            metrics.IGNORED.labels(reason=reason).inc()
        if log.isEnabledFor(logging.DEBUG):
            for intent in decided.intents:
                log.debug(
                    "intent %s: %s %s:%s %s",
                    intent["id"],
                    intent["action"],
                    intent["model"],
                    intent["version"],
                    intent["path"],
                )
        return Answer(200, {"accepted": len(ids), "ignored": len(decided.ignored), "intents": ids})

    def write(self, intents: Sequence[Intent]) -> list[str]:
        """Make ``intents`` durable (one synchronous write of a frame to this process's intent
        log segment; files and a directory fsync for resyncs and a commit too large for one)
        and return their ids, or raise :class:`IntentsUnavailable`.

        Concurrent requests share one group commit (``modelsync/intentbatch.py``); each
        returns only once its own intents are durable. The state directory is checked again
        before any new log segment or file is made, not only at start-up: an intent written
        through a ``.modelsync`` link made later would be acknowledged where no agent reads
        it. Between those, a frame goes to the open segment only while its path still names
        that file.
        """
        try:
            self.group.commit(intents)
            return [intent["id"] for intent in intents]
        except ConfigError as exc:
            failure = exc.message
        except OSError as exc:
            failure = f"{exc.filename or self.settings.intents_dir}: {exc.strerror or type(exc).__name__}"
        metrics.REJECTED.labels(reason="intents_unavailable").inc()
        log.error("cannot write intents: %s", failure)
        raise IntentsUnavailable(f"cannot write intents: {failure}")


def _refused(exc: notifications.Refused) -> Answer:
    metrics.REJECTED.labels(reason=exc.reason.value).inc()
    if exc.reason is notifications.Refusal.UNSAFE_KEY:
        log.warning("rejected event with unsafe key: %s", exc.message.removeprefix("unsafe object key: "))
    return Answer(_STATUS.get(exc.reason, 400), error_document(exc.message, field=exc.field))
