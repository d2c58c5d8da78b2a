"""KServe's binary tensor extension (``Inference-Header-Content-Length``) through the REST
provider, with ``tritonclient.http`` and ``binary_data=True`` (a client nobody here wrote).

MLServer's REST API does not take binary tensors, so the chain is: client -> gateway A (REST
provider over REST: passes the body and the answer through unchanged) -> gateway B (REST provider
over the gRPC adapter: binary tensors to raw gRPC contents and back) -> MLServer's gRPC port. The
outputs must be those of ``tritonclient.grpc`` calling MLServer directly, and both gateways must
record them decoded.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import requests
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http

from devstack.modelserver import ModelServer
from modelsync import schema
from tests.support.gateway import Gateway, read_jsonl
from tests.support.helpers import wait_for
from tests.support.volume import Volume

ROWS = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32)
ECHO = {
    "x": np.array([b"hello", "gr\u00fc\u00df".encode(), b""], dtype=np.object_),
    "h": np.array([[0.5, -1.25], [65504.0, 0.0999755859375]], dtype=np.float16),
    "b": np.array([True, False, True]),
}


def sink(volume: Volume, name: str) -> Path:
    return volume.root / "predictions" / f"{name}.jsonl"


def start_chain(
    volume: Volume, model_server: ModelServer, start: Callable[..., Gateway]
) -> tuple[Gateway, Gateway]:
    """Gateway B over gRPC to MLServer, then gateway A over REST to B (each reads the file at start)."""
    gateway = volume.settings["gateway"]
    gateway["reporting"]["inputs"] = "all"
    gateway["reporting"]["sinks"] = [{"type": "file", "path": str(sink(volume, "b"))}]
    gateway["model_service"].update(protocol="grpc", grpc_target=model_server.grpc_target)
    volume.write()
    over_grpc = start()
    gateway["reporting"]["sinks"] = [{"type": "file", "path": str(sink(volume, "a"))}]
    gateway["model_service"].update(protocol="http", url=over_grpc.url)
    volume.write()
    return start(), over_grpc


def http_inputs(arrays: dict[str, np.ndarray[Any, Any]]) -> list[triton_http.InferInput]:
    inputs = []
    for name, array in arrays.items():
        tensor = triton_http.InferInput(name, list(array.shape), triton_http.np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    return inputs


def grpc_inputs(arrays: dict[str, np.ndarray[Any, Any]]) -> list[triton_grpc.InferInput]:
    inputs = []
    for name, array in arrays.items():
        tensor = triton_grpc.InferInput(name, list(array.shape), triton_grpc.np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


# The records checked below. Two gunicorn workers report on their own schedules, so a count of
# records can be reached before one of these is written: wait for each of them.
WANTED_RECORDS = {
    ("bin-adder", "sum"),
    ("bin-adder", "count"),
    ("bin-slow", "y"),
    ("bin-slow", "h"),
    ("bin-slow", "b"),
}


def test_binary_tensors_pass_through_and_are_recorded(
    gateway_volume: Volume, model_server: ModelServer, start_gateway: Callable[..., Gateway]
) -> None:
    front, back = start_chain(gateway_volume, model_server, start_gateway)
    calls = [("adder", "2", {"x": ROWS}, ["sum", "count"]), ("slow", None, ECHO, ["y", "h", "b"])]

    with triton_grpc.InferenceServerClient(model_server.grpc_target) as direct:
        expected = {
            model: direct.infer(model, grpc_inputs(arrays), model_version=version or "")
            for model, version, arrays, _ in calls
        }
    for gateway in (front, back):
        client = triton_http.InferenceServerClient(gateway.url.removeprefix("http://"))
        for model, version, arrays, outputs in calls:
            result = client.infer(
                model,
                http_inputs(arrays),
                model_version=version or "",
                headers={"X-Request-Id": f"bin-{model}"},
            )
            response = result.get_response()
            for name in outputs:
                assert "data" not in next(o for o in response["outputs"] if o["name"] == name), (
                    "binary outputs"
                )
                through, straight = result.as_numpy(name), expected[model].as_numpy(name)
                assert through.dtype == straight.dtype and through.tolist() == straight.tolist(), (
                    model,
                    name,
                )
        client.close()

    for name in ("a", "b"):
        path = sink(gateway_volume, name)
        records = wait_for(
            lambda p=path: (
                {(r["requestId"], r["outputName"]) for r in read_jsonl(p)} >= WANTED_RECORDS and read_jsonl(p)
            ),
            15,
            what=f"{name}'s records",
        )
        for record in records:
            schema.check(schema.PREDICTION, record)
        by_output = {(r["requestId"], r["outputName"]): r for r in records}
        assert by_output[("bin-adder", "sum")]["value"]["data"] == [12.0, 30.0]  # adder v2: row sums * 2
        assert by_output[("bin-adder", "count")]["value"]["data"] == [3, 3]
        assert by_output[("bin-slow", "y")]["value"]["data"] == ["hello", "gr\u00fc\u00df", ""]
        assert by_output[("bin-slow", "h")]["value"]["data"] == ECHO["h"].ravel().tolist()
        assert by_output[("bin-slow", "b")]["value"]["data"] == [True, False, True]
        assert by_output[("bin-adder", "sum")]["inputs"][0]["data"] == ROWS.ravel().tolist()


def test_a_header_that_does_not_fit_the_body_is_a_400(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway()
    answer = requests.post(
        gateway.url + "/v2/models/adder/infer",
        data=b'{"inputs": []}',
        headers={"Inference-Header-Content-Length": "999"},
        timeout=10,
    )
    assert answer.status_code == 400
    assert "Inference-Header-Content-Length" in answer.json()["error"]
