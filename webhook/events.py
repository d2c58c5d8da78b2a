"""``/minio/events``: where MinIO posts bucket notifications.

Answers: 200 once every accepted record is a durable intent; 400 for a body that is not
JSON or fails the event schema; 401 without the token; 413 over the size limit; 422 for an
unsafe key (nothing of that request is written). Records that are merely not ours (another
bucket, another event type, a key outside the layout) get 200 and are counted as ignored:
a 4xx would make MinIO re-send them forever.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from flask import Blueprint, Response, current_app, jsonify

from modelsync import notifications
from modelsync.config import Config
from modelsync.errors import ConfigError
from modelsync.intentbatch import GroupCommit
from modelsync.intents import Intent, IntentWriter
from modelsync.web import error_response
from webhook import metrics
from webhook.auth import require_token

# parse_json_body is re-exported: /v1/resync reads its body the same way.
from webhook.body import BadBody
from webhook.body import parse_json_body as parse_json_body

log = logging.getLogger(__name__)
bp = Blueprint("events", __name__)


@bp.route("/minio/events", methods=["HEAD", "GET"])
def probe() -> tuple[Response, int]:
    # MinIO probes its target with HEAD before it sends, and whenever it thinks it is down.
    return jsonify(status="ok"), 200


@bp.post("/minio/events")
@require_token
def receive() -> tuple[Response, int]:
    settings: Config = current_app.config["MODELSYNC"]
    writer: IntentWriter = current_app.extensions["intent_writer"]
    try:
        body = parse_json_body()
    except BadBody as exc:
        metrics.REJECTED.labels(reason="bad_json").inc()
        if exc.field is not None:
            return error_response(400, str(exc), field=exc.field)
        return error_response(400, str(exc))
    try:
        records = notifications.records_of(body)
        metrics.RECEIVED.inc(len(records))
        decided = notifications.decide(records, settings, writer)
    except notifications.Refused as exc:
        return _refused(exc)

    try:
        ids = write_durably(settings, decided.intents)
    except IntentsUnavailable as exc:
        return error_response(503, str(exc))  # not the client's fault: MinIO sends it again
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
    return jsonify(accepted=len(ids), ignored=len(decided.ignored), intents=ids), 200


# An unsafe key is a request we understood and refuse (422); the rest is malformed (400).
_STATUS = {notifications.Refusal.UNSAFE_KEY: 422}


def _refused(exc: notifications.Refused) -> tuple[Response, int]:
    metrics.REJECTED.labels(reason=exc.reason.value).inc()
    if exc.reason is notifications.Refusal.UNSAFE_KEY:
        log.warning("rejected event with unsafe key: %s", exc.message.removeprefix("unsafe object key: "))
    return error_response(_STATUS.get(exc.reason, 400), exc.message, field=exc.field)


class IntentsUnavailable(Exception):
    """The intents directory cannot take the request's intents now (missing, not writable, or
    made a symbolic link since start-up)."""


def write_durably(settings: Config, intents: Sequence[Intent]) -> list[str]:
    """Make ``intents`` durable (one synchronous write of a frame to this process's intent log
    segment; files and a directory fsync for resyncs and a commit too large for one) or raise
    :class:`IntentsUnavailable`.

    Concurrent requests share one group commit (``modelsync/intentbatch.py``); each returns
    only once its own intents are durable. The state directory is checked again before any
    new log segment or file is made, not only at start-up: an intent written through a
    ``.modelsync`` link made later would be acknowledged where no agent reads it. Between
    those, a frame goes to the open segment only while its path still names that file.
    """
    group: GroupCommit = current_app.extensions["intent_commit"]
    try:
        group.commit(intents)
        return [intent["id"] for intent in intents]
    except ConfigError as exc:
        failure = exc.message
    except OSError as exc:
        failure = f"{exc.filename or settings.intents_dir}: {exc.strerror or type(exc).__name__}"
    metrics.REJECTED.labels(reason="intents_unavailable").inc()
    log.error("cannot write intents: %s", failure)
    raise IntentsUnavailable(f"cannot write intents: {failure}")
