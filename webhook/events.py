"""``/minio/events``: where MinIO posts bucket notifications.

Answers: 200 once every accepted record is a durable intent; 400 for a body that is not
JSON or fails the event schema; 401 without the token; 413 over the size limit; 422 for an
unsafe key (nothing of that request is written). Records that are merely not ours (another
bucket, another event type, a key outside the layout) get 200 and are counted as ignored:
a 4xx would make MinIO re-send them forever.

What a body becomes is :meth:`webhook.intake.Intake.answer`. MinIO's ordinary posts reach it
below Flask (``webhook/direct.py``), and so do the Flask test client's posts with a length and
the token; this view serves every other post to the route (a chunked body, a missing or wrong
token) with the same answers. So a new check of the body or its records goes in
``Intake.answer``, never in :func:`receive`, which most posts never reach.
"""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from modelsync.web import request_body
from webhook.auth import require_token
from webhook.intake import Intake

bp = Blueprint("events", __name__)


@bp.route("/minio/events", methods=["HEAD", "GET"])
def probe() -> tuple[Response, int]:
    # MinIO probes its target with HEAD before it sends, and whenever it thinks it is down.
    return jsonify(status="ok"), 200


@bp.post("/minio/events")
@require_token
def receive() -> tuple[Response, int]:
    intake: Intake = current_app.extensions["intake"]
    answer = intake.answer(request_body())
    return jsonify(answer.document), answer.status
