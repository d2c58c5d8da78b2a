"""The gRPC provider in front of a REST model server: each RPC as the REST call it stands for,
the JSON answer turned into the RPC's response message."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from gateway.errors import ModelServiceUnavailable
from gateway.grpc import convert
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.status import RpcFailure, grpc_code
from gateway.inference import JSON, error_body, normalise_error
from gateway.modelservice import HttpModelService, ServiceResponse, infer_path

PROTO = "application/grpc+proto"


def infer_over_rest(
    service: HttpModelService, model: str, version: str | None, body: bytes, headers: dict[str, str]
) -> ServiceResponse:
    try:
        request = convert.request_to_json(body)
    except convert.ConvertError as exc:
        return ServiceResponse(400, error_body(str(exc)), JSON, 0.0)
    response = service.post(infer_path(model, version), request, headers)
    if not 200 <= response.status < 300:
        return response
    try:
        return replace(response, body=convert.response_to_proto(response.body), content_type=PROTO)
    except convert.ConvertError as exc:
        raise ModelServiceUnavailable(
            f"model server answer has no gRPC form: {exc}", bad_answer=True
        ) from None


def _path(name: str, version: str) -> str:
    return f"/v2/models/{name}" + (f"/versions/{version}" if version else "")


def _get(service: HttpModelService, path: str) -> ServiceResponse:
    try:
        return service.get(path)
    except ModelServiceUnavailable as exc:
        raise RpcFailure(grpc_code(exc.status), str(exc)) from None


def _failure(response: ServiceResponse) -> RpcFailure:
    text = json.loads(normalise_error(response.status, response.body))["error"]
    return RpcFailure(grpc_code(response.status), str(text))


def _document(response: ServiceResponse, message: Message) -> bytes:
    if not 200 <= response.status < 300:
        raise _failure(response)
    try:
        json_format.Parse(response.body, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise RpcFailure(grpc_code(502), f"model server answer has no gRPC form: {exc}") from None
    return message.SerializeToString()


def _ready(response: ServiceResponse, answer: Any) -> bytes:
    if response.status == 404:
        raise _failure(response)
    return bytes(answer(ready=response.status == 200).SerializeToString())


def rpc_over_rest(service: HttpModelService, method: str, request: bytes) -> bytes:
    """The metadata and health RPCs (everything but ModelInfer) answered from the REST API."""
    try:
        if method == "ServerLive":
            return pb.ServerLiveResponse(
                live=_get(service, "/v2/health/live").status == 200
            ).SerializeToString()
        if method == "ServerReady":
            return _ready(_get(service, "/v2/health/ready"), pb.ServerReadyResponse)
        if method == "ServerMetadata":
            return _document(_get(service, "/v2"), pb.ServerMetadataResponse())
        if method == "ModelReady":
            asked = pb.ModelReadyRequest.FromString(request)
            return _ready(_get(service, _path(asked.name, asked.version) + "/ready"), pb.ModelReadyResponse)
        if method == "ModelMetadata":
            wanted = pb.ModelMetadataRequest.FromString(request)
            return _document(_get(service, _path(wanted.name, wanted.version)), pb.ModelMetadataResponse())
    except DecodeError:
        raise RpcFailure(grpc_code(400), f"not a {method}Request message") from None
    raise RpcFailure(grpc_code(501), f"{method} is not served")
