"""The gRPC model-service adapter: KServe v2 over gRPC to the model server (OVMS's port 9000).

One channel (HTTP/2, multiplexed) serves every thread. Messages travel as bytes: a gRPC provider's
request goes on as it came and the answer comes back as it was (nothing re-encoded); REST and
Kafka providers' JSON is converted exactly (``gateway/grpc/convert.py``). Before a call the
channel must be connected, within ``connect_timeout_seconds``: a model server that is down is an
``UNAVAILABLE`` the client gets at once, and a request that never left is safe to send again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import grpc

from gateway.binary import BinaryOutputs, encode_answer
from gateway.errors import ModelServiceUnavailable
from gateway.grpc import convert
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.status import http_status
from gateway.inference import JSON, error_body
from gateway.modelservice import ServiceResponse
from modelsync.gatewayconfig import ModelServiceConfig

SERVICE = "inference.GRPCInferenceService"
PROTO = "application/grpc+proto"
BINARY = "application/octet-stream"  # KServe's binary tensor extension (with its header)
METHODS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")


class GrpcModelService:
    def __init__(self, config: ModelServiceConfig) -> None:
        self.target = config.grpc_target
        self._timeout = config.timeout_seconds
        self._connect_timeout = config.connect_timeout_seconds
        self._options = [
            ("grpc.max_receive_message_length", config.max_answer_bytes),
            ("grpc.max_send_message_length", -1),
            # gRPC's default backoff grows to 120 s: a model server that restarts would stay
            # "down" for the gateway long after it is back.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
            ("grpc.enable_retries", 0),  # a request that was sent is never sent again
        ]
        self._lock = threading.Lock()
        self._pid = 0
        self._channel: grpc.Channel | None = None
        self._connected = threading.Event()
        self.rpc: dict[str, Any] = {}

    def _open(self) -> grpc.Channel:
        """This process's channel, made on first use: gunicorn preloads the app in its master
        and forks, and a gRPC channel does not survive a fork."""
        channel, pid = self._channel, self._pid
        if channel is not None and pid == os.getpid():
            return channel  # every call but the first: no lock
        with self._lock:
            if self._channel is None or self._pid != os.getpid():
                self._connected.clear()
                channel = grpc.insecure_channel(self.target, options=self._options)
                channel.subscribe(self._on_state, try_to_connect=True)
                self.rpc = {
                    m: channel.unary_unary(f"/{SERVICE}/{m}", _registered_method=True) for m in METHODS
                }
                self._channel, self._pid = channel, os.getpid()
            return self._channel

    def _on_state(self, state: grpc.ChannelConnectivity) -> None:
        if state == grpc.ChannelConnectivity.READY:
            self._connected.set()
        else:
            self._connected.clear()

    def wait_connected(self) -> None:
        """Return once the channel is connected, or raise: the request was not sent."""
        channel = self._open()
        if self._connected.is_set():
            return
        try:
            grpc.channel_ready_future(channel).result(timeout=self._connect_timeout)
        except grpc.FutureTimeoutError:
            raise ModelServiceUnavailable(
                f"model server {self.target} not reachable over gRPC within {self._connect_timeout} s",
                sent=False,
            ) from None

    def call(self, method: str, request: bytes, request_id: str | None = None) -> bytes:
        """One RPC, bytes in and out; raises ``grpc.RpcError`` or ``ModelServiceUnavailable``."""
        self.wait_connected()
        metadata = (("x-request-id", request_id),) if request_id else None
        answer: bytes = self.rpc[method](request, timeout=self._timeout, metadata=metadata)
        return answer

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
        binary = BinaryOutputs()
        if not proto:
            try:
                body, binary = convert.request_to_proto(body, model, version, json_length)
            except convert.ConvertError as exc:
                return ServiceResponse(400, error_body(str(exc)), JSON, 0.0)
        started = time.perf_counter()
        try:
            answer = self.call("ModelInfer", body, request_id)
        except grpc.RpcError as exc:
            return _failed(exc, time.perf_counter() - started)
        elapsed = time.perf_counter() - started
        if proto:
            return ServiceResponse(200, answer, PROTO, elapsed)
        try:
            document = convert.response_document(answer)
        except convert.ConvertError as exc:
            raise ModelServiceUnavailable(
                f"model server answer has no JSON form: {exc}", bad_answer=True
            ) from None
        content, length = encode_answer(document, binary)
        return ServiceResponse(200, content, JSON if length is None else BINARY, elapsed, json_length=length)

    def get(self, path: str) -> ServiceResponse:
        """A REST metadata or health route, answered by the RPC it stands for."""
        from gateway.grpc.restproto import get_over_rpc

        return get_over_rpc(self, path)

    def ready(self) -> bool:
        try:
            return bool(pb.ServerReadyResponse.FromString(self.call("ServerReady", b"")).ready)
        except (grpc.RpcError, ModelServiceUnavailable):
            return False

    def close(self) -> None:
        with self._lock:
            if self._channel is not None and self._pid == os.getpid():
                self._channel.close()
            self._channel = None


def _failed(exc: Any, elapsed: float) -> ServiceResponse:
    """A model server's gRPC error as the HTTP-style answer the predictor passes on; the
    gateway's own failures (no answer in time, connection lost) as ``ModelServiceUnavailable``."""
    code: grpc.StatusCode = exc.code()
    details = exc.details() or code.name
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        raise ModelServiceUnavailable("model server did not answer in time", timed_out=True) from None
    if code == grpc.StatusCode.UNAVAILABLE:
        raise ModelServiceUnavailable(f"model server connection failed: {details}") from None
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "message larger than max" in details:
        raise ModelServiceUnavailable(
            f"{details} (gateway.model_service.max_answer_bytes)", bad_answer=True
        ) from None
    return ServiceResponse(
        http_status(code), json.dumps({"error": details}).encode(), JSON, elapsed, code.name
    )
