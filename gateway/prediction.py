"""Predictions: one record per output of a model call (``schemas/prediction.schema.json``).

The request path only captures a :class:`Call` (bytes and timestamps, no parsing); the
reporter's background thread turns it into prediction records, so building them never adds
to a client's latency.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class Call:
    """What the gateway saw of one model call."""

    request_id: str
    model: str
    version: str | None  # the version asked for; the reply may name the one that answered
    provider: str
    requested_at: float  # time.time() when the request reached the gateway
    answered_at: float
    http_status: int | None  # None: the model server did not answer
    response: bytes
    error: str | None = None
    request: bytes | None = None  # kept only when inputs are recorded for this call
    possible_duplicate: bool = False
    # request, and a 2xx response, are KServe v2 protobuf messages (the gRPC provider), not JSON
    proto: bool = False
    # KServe's binary tensor extension: the length of the JSON header before the raw tensors
    request_json_length: int | None = None
    response_json_length: int | None = None
    # Every sink encodes the call on its own: the ids must come from the call, not the encoding,
    # so that one prediction has one id in the file, on Kafka and in the bucket alike.
    call_id: str = field(default_factory=lambda: secrets.token_hex(16))

    @property
    def ok(self) -> bool:
        return self.error is None and self.http_status is not None and 200 <= self.http_status < 300


def timestamp(epoch: float) -> str:
    """UTC, millisecond precision: ``2026-11-26T20:15:03.123Z``."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def predictions(call: Call) -> list[dict[str, Any]]:
    """The records of one call: one per output tensor, or one error record."""
    base = _base(call)
    if call.possible_duplicate:
        base["possibleDuplicate"] = True
    inputs = _inputs(call) if call.request is not None else None
    if inputs is not None:
        base["inputs"] = inputs
    document = _response_document(call)
    if call.ok and document is not None and isinstance(document.get("outputs"), list):
        version = document.get("model_version")
        if isinstance(version, str) and version:
            base["modelVersion"] = version
        outputs = [o for o in document["outputs"] if _is_tensor(o)]
        if outputs:
            return [_output_record(base, call, index, output) for index, output in enumerate(outputs)]
        return [_error_record(base, call, "model server answered without outputs")]
    return [_error_record(base, call, call.error or _error_text(call, document))]


def prediction_id(call: Call, index: int) -> str:
    """Stable for a call and output: the same prediction has the same id in every sink."""
    return call.call_id if index == 0 else uuid.uuid5(uuid.UUID(call.call_id), str(index)).hex


def _output_record(base: dict[str, Any], call: Call, index: int, output: dict[str, Any]) -> dict[str, Any]:
    return {
        **base,
        "predictionId": prediction_id(call, index),
        "status": "ok",
        "outputIndex": index,
        "outputName": output.get("name"),
        "value": output,
        "error": None,
    }


def _error_record(base: dict[str, Any], call: Call, message: str) -> dict[str, Any]:
    return {
        **base,
        "predictionId": prediction_id(call, 0),
        "status": "error",
        "outputIndex": 0,
        "outputName": None,
        "value": None,
        "error": message,
    }


def fallback_record(call: Call, message: str) -> dict[str, Any]:
    """An error record built from the call's fields alone (nothing parsed)."""
    return _error_record(_base(call), call, message)


def _base(call: Call) -> dict[str, Any]:
    return {
        "requestId": call.request_id,
        "modelName": call.model,
        "modelVersion": call.version,
        "provider": call.provider,
        "httpStatus": call.http_status,
        "requestTimestamp": timestamp(call.requested_at),
        "responseTimestamp": timestamp(call.answered_at),
        "timeTakenInMs": round(max(call.answered_at - call.requested_at, 0.0) * 1000, 3),
    }


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: a hostile, deeply nested body
        return None
    return document if isinstance(document, dict) else None


def _is_tensor(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("name"), str)
        and isinstance(value.get("shape"), list)
        and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value["shape"])
        and isinstance(value.get("datatype"), str)
    )


def _proto_document(body: bytes, kind: str) -> dict[str, Any] | None:
    """A gRPC call's message as the KServe v2 JSON it stands for (BYTES that are not UTF-8 get
    replacement characters: a record describes, it is not sent on)."""
    from gateway.grpc import convert  # protobuf only in processes that serve gRPC

    try:
        if kind == "request":
            return convert.request_document(body, strict=False)
        return convert.response_document(body, strict=False)
    except convert.ConvertError:
        return None


def _response_document(call: Call) -> dict[str, Any] | None:
    if call.proto and call.ok:
        return _proto_document(call.response, "response")
    if call.response_json_length is not None:
        return _binary_document(call.response, call.response_json_length, "outputs")
    return _object(call.response)


def _binary_document(body: bytes, json_length: int, key: str) -> dict[str, Any] | None:
    """A binary-extension body as plain KServe v2 JSON (raw tensors decoded into ``data``)."""
    from gateway.binary import BinaryError, inline

    try:
        return inline(body, json_length, key)
    except BinaryError:
        return None


def _inputs(call: Call) -> list[dict[str, Any]] | None:
    assert call.request is not None
    if call.proto:
        document = _proto_document(call.request, "request")
    elif call.request_json_length is not None:
        document = _binary_document(call.request, call.request_json_length, "inputs")
    else:
        document = _object(call.request)
    if document is None or not isinstance(document.get("inputs"), list):
        return None
    return [item for item in document["inputs"] if isinstance(item, dict)]


def _error_text(call: Call, document: dict[str, Any] | None) -> str:
    if document is not None and isinstance(document.get("error"), str):
        return str(document["error"])
    return f"model server answered {call.http_status}"
