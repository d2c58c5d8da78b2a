"""The model service adapter: how the gateway calls the model server.

``ModelService`` is the interface (a gRPC adapter can be added beside the HTTP one). The HTTP
adapter speaks OVMS's KServe v2 REST API over pooled keep-alive connections. It retries only
where that is safe: a connection that failed before the request was sent (refused, reset on
connect, DNS). Once a request left, it is never sent again: the server may be working on it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

import urllib3
from urllib3.exceptions import HTTPError, MaxRetryError, NewConnectionError, TimeoutError
from urllib3.util import Retry, Timeout

from gateway.errors import ModelServiceUnavailable
from modelsync.gatewayconfig import ModelServiceConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceResponse:
    status: int
    body: bytes
    content_type: str
    elapsed: float  # seconds spent waiting on the model server


class ModelService(Protocol):
    def infer(self, model: str, version: str | None, body: bytes, request_id: str) -> ServiceResponse: ...

    def get(self, path: str) -> ServiceResponse: ...

    def close(self) -> None: ...


def infer_path(model: str, version: str | None) -> str:
    if version:
        return f"/v2/models/{model}/versions/{version}/infer"
    return f"/v2/models/{model}/infer"


class HttpModelService:
    """KServe v2 over HTTP, with a connection pool shared by all request threads."""

    def __init__(self, config: ModelServiceConfig) -> None:
        self.base = config.url.rstrip("/")
        # connect retries only: urllib3 counts those as errors raised before the request was sent.
        retry = Retry(total=None, connect=config.connect_retries, read=0, status=0, other=0, redirect=0)
        retry.backoff_factor = 0.05
        self._timeout = Timeout(connect=config.connect_timeout_seconds, read=config.timeout_seconds)
        self._pool = urllib3.PoolManager(
            num_pools=4, maxsize=config.pool_size, block=False, retries=retry, timeout=self._timeout
        )

    def infer(self, model: str, version: str | None, body: bytes, request_id: str) -> ServiceResponse:
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        return self._request("POST", infer_path(model, version), body, headers)

    def get(self, path: str) -> ServiceResponse:
        return self._request("GET", path, None, {})

    def close(self) -> None:
        self._pool.clear()

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> ServiceResponse:
        started = time.perf_counter()
        try:
            response = self._pool.request(
                method, self.base + path, body=body, headers=headers, preload_content=True
            )
        except MaxRetryError as exc:
            reason = exc.reason
            # NewConnectionError subclasses ConnectTimeoutError in urllib3: refused is not slow.
            timed_out = isinstance(reason, TimeoutError) and not isinstance(reason, NewConnectionError)
            raise ModelServiceUnavailable(_describe(reason), timed_out=timed_out) from None
        except TimeoutError:
            raise ModelServiceUnavailable("model server did not answer in time", timed_out=True) from None
        except HTTPError as exc:
            # Sent, then the connection broke: not retried, the server may have acted on it.
            raise ModelServiceUnavailable(f"model server connection failed: {type(exc).__name__}") from None
        return ServiceResponse(
            status=response.status,
            body=response.data,
            content_type=response.headers.get("Content-Type", "application/json"),
            elapsed=time.perf_counter() - started,
        )


def _describe(reason: BaseException | None) -> str:
    if isinstance(reason, NewConnectionError):
        return "model server refused the connection"
    if isinstance(reason, TimeoutError):
        return "model server did not answer in time"
    return f"model server unreachable: {type(reason).__name__ if reason else 'unknown'}"
