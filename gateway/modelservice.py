"""The model service adapter: how the gateway calls the model server.

``ModelService`` is the interface (``gateway/grpc/client.py`` is the gRPC one). The HTTP
adapter speaks OVMS's KServe v2 REST API over keep-alive connections, one per calling thread
(no shared pool to lock), see ``gateway/connection.py``. It retries only where that is safe:
a connection that could not be made (refused, reset or timed out while connecting). Once a
request was sent it is never sent again: the server may be working on it.
"""

from __future__ import annotations

import errno
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit

import httptools

from gateway.binary import HEADER as BINARY_HEADER
from gateway.connection import AnswerTooLarge, ClosedBeforeAnswer, ConnectFailed, Connection
from gateway.errors import ModelServiceUnavailable
from modelsync.gatewayconfig import ModelServiceConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceResponse:
    status: int
    body: bytes
    content_type: str
    elapsed: float  # seconds spent waiting on the model server
    grpc_code: str | None = None  # the gRPC code a gRPC model server answered with, by name
    json_length: int | None = None  # binary tensor extension: the JSON header's length (gateway/binary.py)


class ModelService(Protocol):
    def infer(
        self,
        model: str,
        version: str | None,
        body: bytes,
        request_id: str,
        *,
        proto: bool = False,
        json_length: int | None = None,
    ) -> ServiceResponse:
        """``proto``: the body is a ``ModelInferRequest`` and a 2xx answer a ``ModelInferResponse``
        (the gRPC provider's form); otherwise both are KServe v2 JSON, with binary tensors after
        ``json_length`` bytes of it when that is given (and when the answer's is set)."""
        ...

    def get(self, path: str) -> ServiceResponse: ...

    def ready(self) -> bool:
        """The model server says it is ready (for the gRPC health service)."""
        ...

    def close(self) -> None: ...


def infer_path(model: str, version: str | None) -> str:
    if version:
        return f"/v2/models/{model}/versions/{version}/infer"
    return f"/v2/models/{model}/infer"


class HttpModelService:
    """KServe v2 over HTTP/1.1 keep-alive, a connection per calling thread."""

    def __init__(self, config: ModelServiceConfig) -> None:
        parts = urlsplit(config.url)
        self.base = config.url.rstrip("/")
        tls = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if tls else 80)
        self._tls = ssl.create_default_context() if tls else None
        self._connect_timeout = config.connect_timeout_seconds
        self._read_timeout = config.timeout_seconds
        self._retries = config.connect_retries
        self._max_answer_bytes = config.max_answer_bytes
        self._local = threading.local()
        self._all: list[Connection] = []
        self._lock = threading.Lock()

    def infer(
        self,
        model: str,
        version: str | None,
        body: bytes,
        request_id: str,
        *,
        proto: bool = False,
        json_length: int | None = None,
    ) -> ServiceResponse:
        headers = {"Content-Type": "application/json", "X-Request-Id": request_id}
        if json_length is not None:  # passed on as it came: the model server reads the binary tensors
            headers.update({"Content-Type": "application/octet-stream", BINARY_HEADER: str(json_length)})
        if not proto:
            return self._request("POST", infer_path(model, version), body, headers)
        from gateway.grpc.protorest import infer_over_rest  # protobuf only where gRPC is used

        return infer_over_rest(self, model, version, body, headers)

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> ServiceResponse:
        return self._request("POST", path, body, headers)

    def get(self, path: str) -> ServiceResponse:
        return self._request("GET", path, None, {})

    def ready(self) -> bool:
        try:
            return self.get("/v2/health/ready").status == 200
        except ModelServiceUnavailable:
            return False

    def close(self) -> None:
        with self._lock:
            for connection in self._all:
                connection.close()
            self._all.clear()

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> ServiceResponse:
        started = time.perf_counter()
        connection = self._connected()
        try:
            try:
                answer, keep_alive = connection.exchange(method, path, headers, body)
            except ClosedBeforeAnswer:
                # The server had closed this kept-alive connection without reading the request.
                connection.close()
                self._open(connection)
                answer, keep_alive = connection.exchange(method, path, headers, body)
        except TimeoutError:
            connection.close()
            raise ModelServiceUnavailable("model server did not answer in time", timed_out=True) from None
        except AnswerTooLarge as exc:
            connection.close()
            raise ModelServiceUnavailable(
                f"{exc.strerror} (gateway.model_service.max_answer_bytes)", bad_answer=True
            ) from None
        except (OSError, httptools.HttpParserError) as exc:
            # Sent, then the connection broke: not retried, the server may have acted on it.
            connection.close()
            raise ModelServiceUnavailable(f"model server connection failed: {type(exc).__name__}") from None
        if not keep_alive:
            connection.close()
        return ServiceResponse(
            answer.status,
            answer.body,
            answer.content_type,
            time.perf_counter() - started,
            json_length=answer.json_length,
        )

    def _connected(self) -> Connection:
        """This thread's connection, open, and not closed by the server while it sat idle."""
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = Connection(
                self._host,
                self._port,
                connect_timeout=self._connect_timeout,
                read_timeout=self._read_timeout,
                tls=self._tls,
                max_answer_bytes=self._max_answer_bytes,
            )
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        if connection.idle_and_dropped():
            connection.close()
        if connection.sock is None:
            self._open(connection)
        return connection

    def _open(self, connection: Connection) -> None:
        delay = 0.05
        for attempt in range(self._retries + 1):
            try:
                connection.open()
                return
            except ConnectFailed as exc:
                failure = exc
            if attempt < self._retries:
                time.sleep(delay)  # nothing was sent: trying again is safe
                delay *= 2
        if failure.errno == errno.ETIMEDOUT:
            message, timed_out = "model server did not accept a connection in time", True
        elif failure.errno == errno.ECONNREFUSED:
            message, timed_out = "model server refused the connection", False
        else:
            message, timed_out = f"model server unreachable: {failure.strerror or failure}", False
        raise ModelServiceUnavailable(message, timed_out=timed_out, sent=False)
