"""The gRPC provider (``python -m gateway grpc``) in front of MLServer's real gRPC and REST
endpoints, called with ``tritonclient.grpc`` (a client nobody here wrote): the same answers as
calling MLServer's gRPC port directly, every call recorded with ``provider: "grpc"``.

Each test runs against both model-service protocols: ``grpc`` (messages passed through as
bytes) and ``http`` (each RPC converted to and from KServe v2 JSON).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import tritonclient.grpc as triton
from tritonclient.grpc import service_pb2, service_pb2_grpc
from tritonclient.utils import InferenceServerException

from devstack.modelserver import ModelServer
from gateway.grpc.wire import PARSE_UP_TO
from tests.support.grpcgateway import GrpcGateway, grpc_volume, start_grpc_gateway
from tests.support.helpers import free_port, wait_for

MAX_MESSAGE = 1024 * 1024


@pytest.fixture(scope="module", params=["grpc", "http"])
def gateway(
    request: pytest.FixtureRequest, model_server: ModelServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GrpcGateway]:
    service: dict[str, Any] = {"protocol": request.param, "timeout_seconds": 3}
    if request.param == "grpc":
        service["grpc_target"] = model_server.grpc_target
    else:
        service["url"] = model_server.url
    volume = grpc_volume(
        tmp_path_factory.mktemp(f"grpc-{request.param}"), service, max_message_bytes=MAX_MESSAGE
    )
    started = start_grpc_gateway(volume)
    yield started
    started.stop()


def client(target: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=target)


def fp32_input(rows: list[list[float]]) -> triton.InferInput:
    tensor = triton.InferInput("x", [len(rows), len(rows[0])], "FP32")
    tensor.set_data_from_numpy(np.array(rows, dtype=np.float32))
    return tensor


def both(gateway: GrpcGateway, model_server: ModelServer, call: Any) -> tuple[Any, Any]:
    with client(gateway.target) as through, client(model_server.grpc_target) as direct:
        return call(through), call(direct)


def test_raw_infer_batch_fp32_and_int64_as_direct(gateway: GrpcGateway, model_server: ModelServer) -> None:
    rows = [[1, 2, 3], [4, 5, 6], [0.5, 0.25, 0.125]]

    def call(c: triton.InferenceServerClient) -> Any:
        return c.infer("adder", [fp32_input(rows)], model_version="2", request_id="req-raw")

    through, direct = both(gateway, model_server, call)

    assert through.as_numpy("sum").tolist() == direct.as_numpy("sum").tolist() == [12.0, 30.0, 1.75]
    assert through.as_numpy("count").dtype == np.int64
    assert through.as_numpy("count").tolist() == direct.as_numpy("count").tolist() == [3, 3, 3]
    assert through.get_response(as_json=True)["model_version"] == "2"


def test_bytes_tensor_as_direct(gateway: GrpcGateway, model_server: ModelServer) -> None:
    words = np.array([b"hello", "gr\u00fc\u00df".encode(), b""], dtype=np.object_)
    tensor = triton.InferInput("x", [3], "BYTES")
    tensor.set_data_from_numpy(words)

    through, direct = both(gateway, model_server, lambda c: c.infer("slow", [tensor]))

    assert through.as_numpy("y").tolist() == direct.as_numpy("y").tolist() == words.tolist()


def test_typed_contents_as_direct(gateway: GrpcGateway, model_server: ModelServer) -> None:
    request = service_pb2.ModelInferRequest(model_name="adder", model_version="1", id="typed")
    tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 3])
    tensor.contents.fp32_contents.extend([1, 2, 3, 4, 5, 6])

    def call(target: str) -> service_pb2.ModelInferResponse:
        with grpc.insecure_channel(target) as channel:
            return service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=10)

    through, direct = call(gateway.target), call(model_server.grpc_target)

    assert through.model_name == direct.model_name == "adder"
    assert through.id == direct.id == "typed"
    assert [o.name for o in through.outputs] == [o.name for o in direct.outputs] == ["sum"]
    assert list(through.outputs[0].shape) == list(direct.outputs[0].shape) == [2]
    assert _values(through) == _values(direct) == [6.0, 15.0]


def test_request_id_comes_back_in_the_initial_metadata(gateway: GrpcGateway) -> None:
    request = service_pb2.ModelInferRequest(model_name="adder", model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=[1, 1]).contents.fp32_contents.append(1)
    with grpc.insecure_channel(gateway.target) as channel:
        infer = service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        _, call = infer.with_call(request, metadata=(("x-request-id", "given-1"),), timeout=10)
        assert ("x-request-id", "given-1") in call.initial_metadata()
        _, call = infer.with_call(request, metadata=(("x-request-id", "not one token"),), timeout=10)
        made = dict(call.initial_metadata())["x-request-id"]
        assert made != "not one token" and len(made) == 32  # one of the gateway's own


def _values(answer: service_pb2.ModelInferResponse) -> list[float]:
    if answer.raw_output_contents:
        return np.frombuffer(answer.raw_output_contents[0], dtype="<f4").tolist()
    return list(answer.outputs[0].contents.fp32_contents)


def test_metadata_and_readiness_as_direct(gateway: GrpcGateway, model_server: ModelServer) -> None:
    with client(gateway.target) as through, client(model_server.grpc_target) as direct:
        assert through.is_server_live() and through.is_server_ready()
        assert through.is_model_ready("adder", "1") == direct.is_model_ready("adder", "1") is True
        assert through.get_model_metadata("adder", "2", as_json=True) == direct.get_model_metadata(
            "adder", "2", as_json=True
        )
        assert (
            through.get_server_metadata(as_json=True)["name"]
            == direct.get_server_metadata(as_json=True)["name"]
        )
        with pytest.raises(InferenceServerException) as missing:
            through.get_model_metadata("nope")
        assert missing.value.status() == "StatusCode.NOT_FOUND"


def test_calls_are_recorded_with_provider_grpc(gateway: GrpcGateway) -> None:
    with client(gateway.target) as c:
        c.infer("adder", [fp32_input([[1, 2], [3, 4]])], model_version="2", headers={"x-request-id": "rec-1"})

    records = wait_for(
        lambda: [r for r in gateway.records() if r["requestId"] == "rec-1"], 10, what="records"
    )

    assert {r["provider"] for r in records} == {"grpc"}
    by_name = {r["outputName"]: r for r in records}
    assert by_name["sum"]["value"] == {
        "name": "sum",
        "datatype": "FP32",
        "shape": [2],
        "data": [6.0, 14.0],
    } | {k: v for k, v in by_name["sum"]["value"].items() if k == "parameters"}
    assert by_name["count"]["value"]["data"] == [2, 2]
    assert by_name["sum"]["modelVersion"] == "2" and by_name["sum"]["status"] == "ok"


def test_a_large_request_is_passed_on_and_checked_as_a_small_one(
    gateway: GrpcGateway, model_server: ModelServer
) -> None:
    """Above ``wire.PARSE_UP_TO`` the provider reads the name off the wire instead of parsing
    the tensors: the answer is still the model server's, and a bad name still refused."""
    columns = PARSE_UP_TO // 4 + 1000
    row = np.linspace(0.0, 1.0, columns, dtype=np.float32)

    def call(c: triton.InferenceServerClient) -> Any:
        tensor = triton.InferInput("x", [1, columns], "FP32")
        tensor.set_data_from_numpy(row.reshape(1, columns))
        return c.infer("adder", [tensor], model_version="2", headers={"x-request-id": "large-1"})

    through, direct = both(gateway, model_server, call)

    assert through.as_numpy("sum").tolist() == direct.as_numpy("sum").tolist()
    assert through.as_numpy("count").tolist() == [columns]
    wait_for(lambda: [r for r in gateway.records() if r["requestId"] == "large-1"], 10, what="its records")
    with client(gateway.target) as c, pytest.raises(InferenceServerException) as refused:
        tensor = triton.InferInput("x", [1, columns], "FP32")
        tensor.set_data_from_numpy(row.reshape(1, columns))
        c.infer("bad/name", [tensor])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "invalid model name" in refused.value.message()


def test_refusals_have_codes_a_client_can_act_on(gateway: GrpcGateway) -> None:
    with client(gateway.target) as c:
        cases: list[tuple[str, Any]] = [
            ("INVALID_ARGUMENT", lambda: c.infer("bad/name", [fp32_input([[1.0]])])),
            ("NOT_FOUND", lambda: c.infer("nope", [fp32_input([[1.0]])])),
            ("RESOURCE_EXHAUSTED", lambda: c.infer("adder", [fp32_input([[1.0] * 1024] * 512)])),
        ]
        for code, call in cases:
            with pytest.raises(InferenceServerException) as refused:
                call()
            assert refused.value.status() == f"StatusCode.{code}", refused.value
            assert refused.value.message(), code


def test_slow_model_is_deadline_exceeded_at_the_configured_timeout(gateway: GrpcGateway) -> None:
    with client(gateway.target) as c:
        tensor = fp32_input([[1.0]])
        started = time.monotonic()
        with pytest.raises(InferenceServerException) as late:
            c.infer("slow", [tensor], parameters={"sleep_ms": 8000})
        elapsed = time.monotonic() - started

    assert late.value.status() == "StatusCode.DEADLINE_EXCEEDED"
    assert 2.5 < elapsed < 7.5  # timeout_seconds: 3, not the model's 8 s


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_model_server_down_is_unavailable_within_the_connect_timeout(protocol: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    service = {"protocol": protocol, "grpc_target": f"127.0.0.1:{port}", "url": f"http://127.0.0.1:{port}"}
    gateway = start_grpc_gateway(grpc_volume(tmp_path, service), serving=False)
    try:
        with client(gateway.target) as c:
            started = time.monotonic()
            with pytest.raises(InferenceServerException) as down:
                c.infer("adder", [fp32_input([[1.0]])])
            elapsed = time.monotonic() - started
        assert down.value.status() == "StatusCode.UNAVAILABLE"
        assert elapsed < 4  # connect_timeout_seconds: 1, plus a loaded machine's slack
        record = wait_for(gateway.records, 10, what="the failed call's record")[0]
        assert (record["provider"], record["status"], record["httpStatus"]) == ("grpc", "error", None)
    finally:
        gateway.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_health_follows_the_model_server(protocol: str, tmp_path: Path) -> None:
    http_port, grpc_port = free_port(), free_port()
    service = {
        "protocol": protocol,
        "grpc_target": f"127.0.0.1:{grpc_port}",
        "url": f"http://127.0.0.1:{http_port}",
    }
    gateway = start_grpc_gateway(grpc_volume(tmp_path, service), serving=False)
    server = ModelServer(
        tmp_path / "mlserver.log", port=http_port, grpc_port=grpc_port, models=(("adder", "1"),)
    )
    try:
        assert gateway.health() == gateway.health("inference.GRPCInferenceService") == 2  # NOT_SERVING
        server.start()
        wait_for(lambda: gateway.health() == 1, 20, 0.1, what="SERVING once the model server is up")
        assert gateway.health("inference.GRPCInferenceService") == 1
        server.stop()
        wait_for(lambda: gateway.health() == 2, 20, 0.1, what="NOT_SERVING once it is gone")
    finally:
        server.stop()
        gateway.stop()
