"""One model call, as both providers make it: call the model server, answer, record.

The request body goes to the model server as it came, and its answer comes back as it was,
so the gateway is a drop-in in front of OVMS. Only errors are reshaped, into the
``{"error": "..."}`` form OVMS uses, when the server answered in another form.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from gateway import metrics
from gateway.errors import ModelServiceUnavailable
from gateway.modelservice import ModelService
from gateway.prediction import Call
from gateway.reporting import Reporting

JSON = "application/json"
MAX_LABELLED_MODELS = 1000  # model versions with labels of their own, per process


@dataclass(frozen=True)
class ClientAnswer:
    """What the gateway answers its client: the REST response, or the Kafka reply."""

    status: int
    body: bytes
    content_type: str
    # The request never reached the model server (no connection), or it answered 503 (not
    # ready): asking again cannot make the model run twice.
    retry_safe: bool = False
    unreachable: bool = False  # no connection to the model server: the request never left
    grpc_code: str | None = None  # a gRPC model server's own error code, passed on by name
    json_length: int | None = None  # binary tensor extension: the answer's JSON header length

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class ModelLabels:
    """The metric labels of model versions. Names a client made up must not become label
    values (anyone could grow the metrics without bound): a name is a label once the model
    server has answered 2xx for it, up to ``limit`` of them."""

    def __init__(self, limit: int = MAX_LABELLED_MODELS) -> None:
        self.limit = limit
        self._known: set[tuple[str, str]] = set()

    def of(self, model: str, version: str | None, status: int) -> tuple[str, str]:
        key = (model, version or "default")
        if 200 <= status < 300:
            if key not in self._known and len(self._known) < self.limit:
                self._known.add(key)
            return key if key in self._known else ("other", "other")
        return key if key in self._known else ("unknown", "unknown")


class Predictor:
    def __init__(self, service: ModelService, reporting: Reporting) -> None:
        self.service = service
        self.reporting = reporting
        self.labels = ModelLabels()

    def infer(
        self,
        model: str,
        version: str | None,
        body: bytes,
        *,
        provider: str,
        request_id: str,
        possible_duplicate: bool = False,
        record_unreachable: bool = True,
        proto: bool = False,
        json_length: int | None = None,
    ) -> ClientAnswer:
        """``proto``: body and 2xx answer are KServe v2 protobuf messages (the gRPC provider).
        ``json_length``: the body is KServe's binary tensor extension (``gateway/binary.py``)."""
        requested_at = time.time()
        started = time.perf_counter()
        keep_inputs = self.reporting.wants_inputs()
        answer, outcome = self._call(model, version, body, request_id, proto, json_length)
        error, http_status, service_seconds = outcome
        duration = time.perf_counter() - started
        model_label, version_label = self.labels.of(model, version, answer.status)
        if http_status is not None:
            metrics.MODEL_SERVICE_LATENCY.labels(model_label, version_label).observe(service_seconds)
        status_label = str(answer.status)
        metrics.REQUESTS.labels(model_label, version_label, provider, status_label).inc()
        metrics.LATENCY.labels(model_label, version_label, provider, status_label).observe(duration)
        if answer.unreachable and not record_unreachable:
            return answer
        self.reporting.submit(
            Call(
                request_id=request_id,
                model=model,
                version=version,
                provider=provider,
                requested_at=requested_at,
                answered_at=requested_at + duration,
                http_status=http_status,
                response=answer.body,
                error=error,
                request=body if keep_inputs else None,
                possible_duplicate=possible_duplicate,
                proto=proto,
                request_json_length=json_length,
                response_json_length=answer.json_length,
            )
        )
        return answer

    def _call(
        self,
        model: str,
        version: str | None,
        body: bytes,
        request_id: str,
        proto: bool,
        json_length: int | None,
    ) -> tuple[ClientAnswer, tuple[str | None, int | None, float]]:
        """The client's answer, and (error, the model server's status, its seconds) to record."""
        try:
            response = self.service.infer(
                model, version, body, request_id, proto=proto, json_length=json_length
            )
        except ModelServiceUnavailable as exc:
            error = str(exc)
            answer = ClientAnswer(
                exc.status, error_body(error), JSON, retry_safe=not exc.sent, unreachable=not exc.sent
            )
            return answer, (error, None, 0.0)
        outcome = (None, response.status, response.elapsed)
        if 200 <= response.status < 300:
            answer = ClientAnswer(
                response.status, response.body, response.content_type, json_length=response.json_length
            )
            return answer, outcome
        body = normalise_error(response.status, response.body)
        answer = ClientAnswer(
            response.status, body, JSON, retry_safe=response.status == 503, grpc_code=response.grpc_code
        )
        return answer, outcome


def normalise_error(status: int, body: bytes) -> bytes:
    """``{"error": "..."}`` whatever shape the model server's error came in."""
    try:
        document: Any = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", "replace").strip()[:500]
        return error_body(text or f"model server answered {status}")
    if isinstance(document, dict):
        if isinstance(document.get("error"), str):
            return body
        if "detail" in document:  # FastAPI-style validation errors (MLServer, KServe's server)
            return error_body(_detail_text(document["detail"]))
    return error_body(f"model server answered {status}: {json.dumps(document)[:500]}")


def _detail_text(detail: Any) -> str:
    if isinstance(detail, list):
        parts = []
        for item in detail[:5]:
            if isinstance(item, dict):
                where = ".".join(str(p) for p in item.get("loc", []))
                parts.append(f"{where}: {item.get('msg', '')}".strip(": "))
            else:
                parts.append(str(item))
        return "; ".join(parts)[:500] or "invalid request"
    return str(detail)[:500]
