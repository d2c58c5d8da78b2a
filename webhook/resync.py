"""``POST /v1/resync``: ask the agent for a full (or per-model, per-version) resync.

``?wait=SECONDS`` blocks until the agent reports the intent applied (200 with its outcome)
or the wait ends (202, still queued).

Fleet mode (``events.kafka``): the request is published on the event topic instead of written
here, so every replica resyncs under the same id; ``wait`` reports this replica's outcome.
503 when the broker does not acknowledge it (nothing was requested).
"""

from __future__ import annotations

import math
import threading
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from modelsync import fleet, keys
from modelsync.config import Config
from modelsync.intents import ResyncFields
from modelsync.results import ResultBox
from modelsync.web import error_response
from webhook import metrics
from webhook.auth import require_token
from webhook.body import parse_json_body
from webhook.intake import Intake, IntentsUnavailable

bp = Blueprint("resync", __name__)
# A waiting request holds a worker thread; MinIO's events must always find a free one, so at
# most this many wait at once per process and the rest are answered 202 at once.
MAX_WAITING = 2
_waiting = threading.BoundedSemaphore(MAX_WAITING)
PUBLISH_TIMEOUT_SECONDS = 5.0


def _target(body: Any) -> ResyncFields:
    """``{"model"?, "version"?}`` from the body, or ValueError naming the field."""
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise ValueError('body must be a JSON object like {"model": "m", "version": 1}')
    unknown = sorted(set(body) - {"model", "version"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r} (allowed: model, version)")
    target: ResyncFields = {}
    model = body.get("model")
    if model is not None:
        if not isinstance(model, str) or not keys.is_model_name(model):
            raise ValueError("model: expected a model name ([A-Za-z0-9][A-Za-z0-9._-]*)")
        target["model"] = model
    version = body.get("version")
    if version is not None:
        if model is None:
            raise ValueError("version: needs a model")
        if isinstance(version, bool) or not isinstance(version, int) or not 0 < version < 2**63:
            raise ValueError("version: expected a positive integer")
        target["version"] = version
    return target


def _wait_seconds(settings: Config) -> float:
    raw = request.args.get("wait")
    if raw is None:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise ValueError("wait: expected a number of seconds") from None
    if not math.isfinite(wait) or wait < 0:
        raise ValueError("wait: expected a number of seconds >= 0")
    return min(wait, settings.webhook.max_wait_seconds)


@bp.post("/v1/resync")
@require_token
def resync() -> tuple[Response, int]:
    settings: Config = current_app.config["MODELSYNC"]
    try:
        body = parse_json_body(allow_empty=True)
        target = _target(body)
        wait = _wait_seconds(settings)
    except ValueError as exc:
        metrics.REJECTED.labels(reason="bad_request").inc()
        return error_response(400, str(exc))
    intake: Intake = current_app.extensions["intake"]
    intent = intake.writer.new("resync", **target)
    kafka = settings.kafka_events
    if kafka is None:
        try:
            intake.write([intent])
        except IntentsUnavailable as exc:
            return error_response(503, str(exc))
    else:
        # Fleet mode: on the event topic, so every replica (this Pod's agent too) resyncs.
        try:
            fleet.publish_resync(kafka, intent, PUBLISH_TIMEOUT_SECONDS)
        except fleet.PublishFailed as exc:
            return error_response(503, f"{exc}; nothing was requested, try again")
    metrics.RESYNCS.inc()
    outcome = None
    if wait > 0 and _waiting.acquire(blocking=False):
        try:
            outcome = ResultBox(settings.results_dir).wait(intent["id"], wait)
        finally:
            _waiting.release()
    if outcome is None:
        return jsonify(id=intent["id"], status="queued", **target), 202
    return jsonify(outcome), 200
