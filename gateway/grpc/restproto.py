"""The REST provider's metadata and health routes in front of a gRPC model server: each path as
the RPC it stands for, the response message as the JSON OVMS's REST API answers."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

import grpc
from google.protobuf import json_format

from gateway.errors import ModelServiceUnavailable
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.status import http_status
from gateway.inference import JSON, error_body
from gateway.modelservice import ServiceResponse

if TYPE_CHECKING:
    from gateway.grpc.client import GrpcModelService

MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<ready>/ready)?$")


def get_over_rpc(service: GrpcModelService, path: str) -> ServiceResponse:
    try:
        return _route(service, path)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            raise ModelServiceUnavailable(
                f"model server: {exc.details()}",
                timed_out=code == grpc.StatusCode.DEADLINE_EXCEEDED,
            ) from None
        return ServiceResponse(http_status(code), error_body(exc.details() or code.name), JSON, 0.0)


def _route(service: GrpcModelService, path: str) -> ServiceResponse:
    if path == "/v2":
        answer = pb.ServerMetadataResponse.FromString(service.call("ServerMetadata", b""))
        return _ok(json_format.MessageToDict(answer, preserving_proto_field_name=True))
    if path == "/v2/health/live":
        live = pb.ServerLiveResponse.FromString(service.call("ServerLive", b"")).live
        return _flag(live, "the model server is not live")
    if path == "/v2/health/ready":
        ready = pb.ServerReadyResponse.FromString(service.call("ServerReady", b"")).ready
        return _flag(ready, "the model server is not ready")
    match = MODEL_PATH.match(path)
    if match is None:
        return ServiceResponse(404, error_body(f"no route {path}"), JSON, 0.0)
    name, version = match["name"], match["version"] or ""
    if match["ready"]:
        asked = pb.ModelReadyRequest(name=name, version=version).SerializeToString()
        ready = pb.ModelReadyResponse.FromString(service.call("ModelReady", asked)).ready
        return _flag(ready, f"model {name} is not ready")
    wanted = pb.ModelMetadataRequest(name=name, version=version).SerializeToString()
    answer_md = pb.ModelMetadataResponse.FromString(service.call("ModelMetadata", wanted))
    document = json_format.MessageToDict(answer_md, preserving_proto_field_name=True)
    for tensor in document.get("inputs", []) + document.get("outputs", []):
        tensor["shape"] = [int(d) for d in tensor.get("shape", [])]  # int64 comes as text in proto JSON
    return _ok(document)


def _ok(document: object) -> ServiceResponse:
    return ServiceResponse(200, json.dumps(document).encode(), JSON, 0.0)


def _flag(value: bool, otherwise: str) -> ServiceResponse:
    # KServe v2 REST: readiness and liveness are the status code (200 true, 4xx false).
    return (
        ServiceResponse(200, b"", JSON, 0.0)
        if value
        else ServiceResponse(400, error_body(otherwise), JSON, 0.0)
    )
