"""``/minio/events``: where MinIO posts bucket notifications.

Answers: 200 once every accepted record is a durable intent; 400 for a body that is not
JSON or fails the event schema; 401 without the token; 413 over the size limit; 422 for an
unsafe key (nothing of that request is written). Records that are merely not ours (another
bucket, another event type, a key outside the layout) get 200 and are counted as ignored:
a 4xx would make MinIO re-send them forever.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from modelsync import fastschema, schema
from modelsync.config import Config
from modelsync.errors import SchemaViolation, UnsafeKeyError
from modelsync.intents import IntentWriter
from modelsync.web import error_response
from webhook import metrics
from webhook.auth import require_token

# parse_json_body is re-exported: /v1/resync reads its body the same way.
from webhook.body import BadBody
from webhook.body import parse_json_body as parse_json_body
from webhook.records import classify

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
    try:
        body = parse_json_body()
        fastschema.check(schema.MINIO_EVENT, body)
    except BadBody as exc:
        metrics.REJECTED.labels(reason="bad_json").inc()
        if exc.field is not None:
            return error_response(400, str(exc), field=exc.field)
        return error_response(400, str(exc))
    except SchemaViolation as exc:
        metrics.REJECTED.labels(reason="schema").inc()
        return error_response(400, f"invalid event: {exc}", field=exc.field)

    records: list[dict[str, Any]] = body["Records"]
    metrics.RECEIVED.inc(len(records))
    writer: IntentWriter = current_app.extensions["intent_writer"]
    intents, ignored = [], []
    # Decide on every record before writing any, so a 422 leaves nothing behind.
    for index, record in enumerate(records):
        try:
            decision = classify(record, settings)
        except UnicodeDecodeError:
            metrics.REJECTED.labels(reason="bad_key").inc()
            return error_response(
                400, "object key is not UTF-8 once decoded", field=f"Records[{index}].s3.object.key"
            )
        except UnsafeKeyError as exc:
            metrics.REJECTED.labels(reason="unsafe_key").inc()
            log.warning("rejected event with unsafe key: %s", exc.reason)
            return error_response(
                422, f"unsafe object key: {exc.reason}", field=f"Records[{index}].s3.object.key"
            )
        if decision.fields is None:
            ignored.append(decision.ignored)
            continue
        try:
            intents.append(writer.new("object", **decision.fields))
        except SchemaViolation as exc:  # a field the intent contract bounds tighter than MinIO
            metrics.REJECTED.labels(reason="schema").inc()
            return error_response(400, f"invalid event: {exc}", field=f"Records[{index}]")

    ids = writer.write_all(intents)
    metrics.ACCEPTED.inc(len(ids))
    for reason in ignored:
        metrics.IGNORED.labels(reason=reason).inc()
    for intent in intents:
        log.debug(
            "intent %s: %s %s:%s %s",
            intent["id"],
            intent["action"],
            intent["model"],
            intent["version"],
            intent["path"],
        )
    return jsonify(accepted=len(ids), ignored=len(ignored), intents=ids), 200
