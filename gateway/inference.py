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
from gateway.reporter import Reporters

JSON = "application/json"


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    content_type: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class Predictor:
    def __init__(self, service: ModelService, reporters: Reporters) -> None:
        self.service = service
        self.reporters = reporters

    def infer(
        self,
        model: str,
        version: str | None,
        body: bytes,
        *,
        provider: str,
        request_id: str,
        possible_duplicate: bool = False,
    ) -> Answer:
        requested_at = time.time()
        started = time.perf_counter()
        keep_inputs = self.reporters.wants_inputs()
        error: str | None = None
        http_status: int | None = None
        try:
            response = self.service.infer(model, version, body, request_id)
        except ModelServiceUnavailable as exc:
            error = str(exc)
            answer = Answer(504 if exc.timed_out else 503, error_body(error), JSON)
        else:
            http_status = response.status
            metrics.MODEL_SERVICE_LATENCY.labels(*_labels(model, version, response.status)).observe(
                response.elapsed
            )
            answer = Answer(response.status, response.body, response.content_type)
            if not answer.ok:
                answer = Answer(response.status, normalise_error(response.status, response.body), JSON)
        duration = time.perf_counter() - started
        model_label, version_label = _labels(model, version, answer.status)
        status_label = str(answer.status)
        metrics.REQUESTS.labels(model_label, version_label, provider, status_label).inc()
        metrics.LATENCY.labels(model_label, version_label, provider, status_label).observe(duration)
        self.reporters.submit(
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
            )
        )
        return answer


def _labels(model: str, version: str | None, status: int) -> tuple[str, str]:
    # Names a client made up must not become label values: that would let anyone grow the
    # metrics without bound. A 404 is the model server saying the name is not a model.
    if status == 404:
        return "unknown", "unknown"
    return model, version or "default"


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
