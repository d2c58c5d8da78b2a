"""The gRPC model-service adapter (``gateway.model_service.protocol: grpc``): the REST and Kafka
providers calling MLServer's real gRPC port give the same answers and records as calling its
REST port, for every datatype (BYTES, FP16 and BOOL included), shapes and parameters."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from devstack.broker import Broker
from devstack.modelserver import ModelServer
from modelsync import schema
from tests.support.gateway import Gateway, infer_body, read_jsonl
from tests.support.helpers import wait_for
from tests.support.kafka import replies, send_request, use_kafka
from tests.support.processes import Process
from tests.support.volume import Volume

ECHO = {
    "id": "echo-1",
    "parameters": {"sleep_ms": 0, "tag": "t", "flag": True},
    "inputs": [
        {"name": "x", "datatype": "BYTES", "shape": [2], "data": ["hello", "gr\u00fc\u00df"]},
        {"name": "h", "datatype": "FP16", "shape": [2, 2], "data": [0.5, -1.25, 65504.0, 0.0999755859375]},
        {"name": "b", "datatype": "BOOL", "shape": [3], "data": [True, False, True]},
        {"name": "i", "datatype": "INT64", "shape": [1, 2], "data": [-(2**40), 7]},
        {"name": "d", "datatype": "FP64", "shape": [1], "data": [0.1]},
        {"name": "u", "datatype": "UINT8", "shape": [2], "data": [0, 255]},
    ],
}
REQUESTS: list[tuple[str, str | None, Any]] = [
    ("adder", "1", infer_body(id="a1")),
    ("adder", "2", infer_body(id="a2")),
    ("adder", None, infer_body(id="a-default")),
    ("slow", None, ECHO),
    ("nope", None, infer_body()),
    ("adder", "9", infer_body()),
    ("adder", "1", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [6], "data": [1] * 6}]}),
    ("failing", None, infer_body()),
]


def start_pair(
    volume: Volume, model_server: ModelServer, start: Callable[..., Gateway]
) -> tuple[Gateway, Gateway]:
    """The REST provider over REST, and over gRPC (each reads the file once, at start)."""
    over_http = start()
    service = volume.settings["gateway"]["model_service"]
    service.update(protocol="grpc", grpc_target=model_server.grpc_target)
    volume.write()
    return over_http, start()


def without_empty_parameters(document: Any) -> Any:
    """MLServer's REST answers carry ``"parameters": {}``; gRPC has no empty map to carry."""
    if isinstance(document, dict):
        return {
            k: without_empty_parameters(v) for k, v in document.items() if not (k == "parameters" and v == {})
        }
    if isinstance(document, list):
        return [without_empty_parameters(v) for v in document]
    return document


def comparable(answer: requests.Response) -> tuple[int, Any]:
    document = answer.json()
    if answer.status_code != 200:
        return answer.status_code, sorted(document)  # the texts differ between the two APIs
    return 200, without_empty_parameters(document)


def test_rest_provider_over_grpc_answers_as_over_http(
    gateway_volume: Volume, model_server: ModelServer, start_gateway: Callable[..., Gateway]
) -> None:
    gateway_volume.settings["gateway"]["reporting"]["inputs"] = "all"
    gateway_volume.write()
    over_http, over_grpc = start_pair(gateway_volume, model_server, start_gateway)

    for index, (model, version, body) in enumerate(REQUESTS):
        via_http = over_http.infer(model, body, version=version, **{"X-Request-Id": f"http-{index}"})
        via_grpc = over_grpc.infer(model, body, version=version, **{"X-Request-Id": f"grpc-{index}"})
        assert comparable(via_grpc) == comparable(via_http), (model, version, via_grpc.text, via_http.text)
    # KServe v2 JSON data may be nested (row-major): gRPC carries it flat.
    nested = {"inputs": [{**ECHO["inputs"][3], "name": "x", "data": [[-(2**40), 7]]}]}
    assert over_grpc.infer("slow", nested).json()["outputs"][0]["data"] == [-(2**40), 7]
    echo = over_grpc.infer("slow", ECHO).json()
    assert [o["data"] for o in echo["outputs"]] == [
        ["hello", "gr\u00fc\u00df"],
        [0.5, -1.25, 65504.0, 0.0999755859375],
        [True, False, True],
        [-(2**40), 7],
        [0.1],
        [0, 255],
    ]

    path = gateway_volume.root / "predictions" / "predictions.jsonl"
    # Each gunicorn worker of each gateway has its own reporter, flushing on its own schedule:
    # the last request's record can be written before an earlier one's, so wait for every id.
    wanted = {f"{via}-{index}" for via in ("http", "grpc") for index in range(len(REQUESTS))}
    records = wait_for(
        lambda: wanted <= {r["requestId"] for r in read_jsonl(path)} and read_jsonl(path), 15, what="records"
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        schema.check(schema.PREDICTION, record)
        by_id.setdefault(record["requestId"], []).append(record)
    for index in range(len(REQUESTS)):
        http_records, grpc_records = by_id[f"http-{index}"], by_id[f"grpc-{index}"]
        values = [without_empty_parameters(r["value"]) for r in http_records]
        assert [r["value"] for r in grpc_records] == values, index
        assert [r["inputs"] for r in grpc_records] == [r["inputs"] for r in http_records], index
        assert [r["httpStatus"] for r in grpc_records] == [r["httpStatus"] for r in http_records], index


def test_rest_metadata_routes_over_grpc(
    gateway_volume: Volume, model_server: ModelServer, start_gateway: Callable[..., Gateway]
) -> None:
    over_http, over_grpc = start_pair(gateway_volume, model_server, start_gateway)
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/adder/versions/2",
        "/v2/models/adder/ready",
    ):
        via_http = requests.get(over_http.url + path, timeout=10)
        via_grpc = requests.get(over_grpc.url + path, timeout=10)
        assert via_grpc.status_code == via_http.status_code == 200, path
    metadata = requests.get(over_grpc.url + "/v2/models/adder/versions/2", timeout=10).json()
    assert metadata["name"] == "adder" and metadata["inputs"][0]["name"] == "x"
    missing = requests.get(over_grpc.url + "/v2/models/nope", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]


def test_kafka_provider_over_grpc_answers_as_over_http(
    gateway_volume: Volume,
    model_server: ModelServer,
    broker: Broker,
    topics: dict[str, str],
    start_kafka_worker: Callable[..., Process],
) -> None:
    use_kafka(gateway_volume, broker, topics)
    gateway_volume.settings["gateway"]["model_service"].update(
        protocol="grpc", grpc_target=model_server.grpc_target
    )
    gateway_volume.write()
    send_request(
        broker, topics["requests"], "c-adder", "adder", infer_body(id="k1"), **{"model-version": "2"}
    )
    send_request(broker, topics["requests"], "c-echo", "slow", ECHO)
    start_kafka_worker()

    answers = {r.correlation: r.body for r in replies(broker, topics["replies"], 2)}
    direct = requests.post(
        model_server.url + "/v2/models/adder/versions/2/infer", json=infer_body(id="k1"), timeout=10
    )
    assert answers["c-adder"] == without_empty_parameters(direct.json())
    direct_echo = requests.post(model_server.url + "/v2/models/slow/infer", json=ECHO, timeout=10)
    assert answers["c-echo"] == without_empty_parameters(direct_echo.json())
