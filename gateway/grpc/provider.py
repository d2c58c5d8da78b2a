"""The gRPC provider: KServe v2 ``inference.GRPCInferenceService`` in front of the model server,
so a client of OVMS's gRPC port changes one address.

Handlers take and return bytes (no serializers): ``ModelInfer`` reads the model's name and
version off the request (``wire.py``: a large one is not parsed) and passes the original bytes
on, and the answer goes back as the model server sent it when that speaks gRPC too. Every
inference goes through the :class:`Predictor` (timed, counted, recorded with
``provider: "grpc"``); metadata and health calls are passed through.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any, NoReturn

import grpc
from google.protobuf.message import DecodeError

from gateway.errors import ModelServiceUnavailable
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.client import METHODS, SERVICE, GrpcModelService
from gateway.grpc.status import RpcFailure, code_named, grpc_code
from gateway.grpc.wire import WireError, model_ref
from gateway.inference import ClientAnswer, Predictor
from gateway.modelservice import HttpModelService
from modelsync.names import is_request_id, model_problem

log = logging.getLogger(__name__)

NAMED_REQUESTS: dict[str, Any] = {
    "ModelReady": pb.ModelReadyRequest,
    "ModelMetadata": pb.ModelMetadataRequest,
}


def request_id_of(context: grpc.ServicerContext) -> str:
    """Metadata ``x-request-id`` when it is a usable id (as REST's ``X-Request-Id``), else a new one."""
    for key, value in context.invocation_metadata():
        if key == "x-request-id" and isinstance(value, str) and is_request_id(value):
            return value
    return uuid.uuid4().hex


def _abort(context: grpc.ServicerContext, failure: RpcFailure) -> NoReturn:
    context.abort(failure.code, failure.message)  # raises
    raise AssertionError("ServicerContext.abort returned")


def _answer_failure(answer: ClientAnswer) -> RpcFailure:
    try:
        text = str(json.loads(answer.body)["error"])
    except (ValueError, KeyError, TypeError):
        text = f"model server answered {answer.status}"
    return RpcFailure(code_named(answer.grpc_code) or grpc_code(answer.status), text)


class InferenceService:
    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def model_infer(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            asked = model_ref(request)  # not a parse of the tensors: they are passed on as bytes
        except WireError:
            _abort(context, RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, "not a ModelInferRequest"))
        version = asked.version or None
        problem = model_problem(asked.name, version)
        if problem is not None:
            _abort(context, RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, problem))
        request_id = request_id_of(context)
        context.send_initial_metadata((("x-request-id", request_id),))
        answer = self.predictor.infer(
            asked.name, version, request, provider="grpc", request_id=request_id, proto=True
        )
        if answer.ok:
            body: bytes = answer.body
            return body
        _abort(context, _answer_failure(answer))

    def passthrough(self, method: str) -> Callable[[bytes, grpc.ServicerContext], bytes]:
        def handle(request: bytes, context: grpc.ServicerContext) -> bytes:
            try:
                self._check_name(method, request)
                answer: bytes = self._call(method, request)
                return answer
            except RpcFailure as failure:
                _abort(context, failure)

        return handle

    def _check_name(self, method: str, request: bytes) -> None:
        kind = NAMED_REQUESTS.get(method)
        if kind is None:
            return
        try:
            asked = kind.FromString(request)
        except DecodeError:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, f"not a {method}Request") from None
        problem = model_problem(asked.name, asked.version or None)
        if problem is not None:
            raise RpcFailure(grpc.StatusCode.INVALID_ARGUMENT, problem)

    def _call(self, method: str, request: bytes) -> bytes:
        service = self.predictor.service
        if isinstance(service, GrpcModelService):
            try:
                return service.call(method, request)
            except grpc.RpcError as exc:
                raise RpcFailure(exc.code(), exc.details() or "") from None
            except ModelServiceUnavailable as exc:
                raise RpcFailure(grpc_code(exc.status), str(exc)) from None
        if isinstance(service, HttpModelService):
            from gateway.grpc.protorest import rpc_over_rest

            return rpc_over_rest(service, method, request)
        raise RpcFailure(grpc.StatusCode.UNIMPLEMENTED, f"{method} is not served")

    def handler(self) -> grpc.GenericRpcHandler:
        handlers = {
            method: grpc.unary_unary_rpc_method_handler(
                self.model_infer if method == "ModelInfer" else self.passthrough(method)
            )
            for method in METHODS
        }
        return grpc.method_handlers_generic_handler(SERVICE, handlers)
