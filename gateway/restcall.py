"""One REST ``infer`` call, as the Flask view (``gateway/rest.py``) and the direct route below
Flask (``gateway/direct.py``) both make it, so their answers, records and metrics cannot drift."""

from __future__ import annotations

import re
import uuid

from gateway import binary
from gateway.inference import JSON, ClientAnswer, Predictor, error_body
from modelsync.names import is_request_id

# The infer routes as Flask's router matches them (a segment is anything but "/").
INFER = re.compile(r"/v2/models/([^/]+)(?:/versions/([^/]+))?/infer")


def request_id(given: str | None) -> str:
    """The client's ``X-Request-Id`` when it is one we pass on, else a new one."""
    return given if given is not None and is_request_id(given) else uuid.uuid4().hex


def infer(
    predictor: Predictor,
    model: str,
    version: str | None,
    body: bytes,
    request_id: str,
    binary_header: str | None,
) -> ClientAnswer:
    """The answer to a whole body (``binary_header``: its ``Inference-Header-Content-Length``)."""
    try:  # KServe's binary tensor extension: passed on as it came, see gateway/binary.py
        json_length = binary.header_length(binary_header, len(body))
    except binary.BinaryError as exc:
        return ClientAnswer(400, error_body(str(exc)), JSON)
    return predictor.infer(
        model, version, body, provider="rest", request_id=request_id, json_length=json_length
    )


def headers(answer: ClientAnswer, request_id: str) -> list[tuple[str, str]]:
    """The answer's own headers, after its content type and length."""
    extra = [("X-Request-Id", request_id)]
    if answer.json_length is not None:
        extra.append((binary.HEADER, str(answer.json_length)))
    return extra
