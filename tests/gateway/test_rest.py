"""The REST provider in front of a real KServe v2 server: a drop-in for calling it directly."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import requests

from devstack.modelserver import ModelServer
from modelsync import schema
from tests.support.gateway import Gateway, infer_body, read_jsonl
from tests.support.helpers import wait_for
from tests.support.volume import Volume


def direct(model_server: ModelServer, path: str, body: object | None = None) -> requests.Response:
    if body is None:
        return requests.get(model_server.url + path, timeout=10)
    return requests.post(model_server.url + path, json=body, timeout=10)


def predictions_file(volume: Volume) -> Path:
    return volume.root / "predictions" / "predictions.jsonl"


def without_id(document: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in document.items() if k != "id"}


def test_infer_answers_exactly_what_the_model_server_answers(
    start_gateway: Callable[..., Gateway], model_server: ModelServer
) -> None:
    gateway = start_gateway()
    body = infer_body(id="req-1")

    through = gateway.infer("adder", body, version="1")
    straight = direct(model_server, "/v2/models/adder/versions/1/infer", body)

    assert through.status_code == straight.status_code == 200
    assert through.json() == straight.json()
    assert through.json()["outputs"][0]["data"] == [6.0, 15.0]
    assert through.headers["Content-Type"].startswith("application/json")


def test_version_routing(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway()

    v1 = gateway.infer("adder", infer_body(), version="1").json()
    v2 = gateway.infer("adder", infer_body(), version="2").json()
    default = gateway.infer("adder", infer_body()).json()

    assert (v1["model_version"], [o["name"] for o in v1["outputs"]]) == ("1", ["sum"])
    assert (v2["model_version"], [o["name"] for o in v2["outputs"]]) == ("2", ["sum", "count"])
    assert v2["outputs"][0]["data"] == [12.0, 30.0]
    assert default["model_version"] == "2"  # the server's choice of default passes through


def test_errors_keep_their_status_and_come_as_error_objects(
    start_gateway: Callable[..., Gateway], model_server: ModelServer
) -> None:
    gateway = start_gateway()
    cases = [
        ("nope", None, infer_body(), 404),
        ("adder", "9", infer_body(), 404),
        ("adder", "1", {"inputs": [{"name": "x", "datatype": "FP32", "shape": [6], "data": [1] * 6}]}, 400),
        ("adder", "1", b"{not json", 422),
        ("failing", None, infer_body(), 500),
    ]
    for model, version, body, status in cases:
        answer = gateway.infer(model, body, version=version)
        assert answer.status_code == status, (model, version, answer.text)
        error = answer.json()["error"]
        assert isinstance(error, str) and error, answer.text
    # The server's own {"error": ...} answers pass through word for word.
    assert (
        gateway.infer("nope", infer_body()).json()
        == direct(model_server, "/v2/models/nope/infer", infer_body()).json()
    )


def test_bad_names_are_refused_by_the_gateway(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway()
    answer = gateway.infer("..", infer_body())
    assert answer.status_code in (400, 404)
    answer = gateway.infer("ad der", infer_body())
    assert answer.status_code == 400 and "invalid model name" in answer.json()["error"]


def test_health_and_metadata_pass_through(
    start_gateway: Callable[..., Gateway], model_server: ModelServer
) -> None:
    gateway = start_gateway()
    for path in (
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/adder",
        "/v2/models/adder/versions/2",
        "/v2/models/adder/ready",
        "/v2/models/adder/versions/1/ready",
        "/v2/models/nope/ready",
    ):
        through = requests.get(gateway.url + path, timeout=10)
        straight = direct(model_server, path)
        assert through.status_code == straight.status_code, path
        assert through.content == straight.content, path


def test_model_server_down_is_a_503_with_an_error(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway_volume.settings["gateway"]["model_service"]["url"] = "http://127.0.0.1:9"  # discard: refused
    gateway_volume.write()
    gateway = start_gateway()

    answer = gateway.infer("adder", infer_body())
    assert answer.status_code == 503
    assert "refused" in answer.json()["error"]
    assert requests.get(gateway.url + "/v2/health/ready", timeout=10).status_code == 503


def test_every_output_is_recorded_as_a_valid_prediction(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway()
    ok = gateway.infer("adder", infer_body(), version="2", **{"X-Request-Id": "two-outputs"})
    failed = gateway.infer("failing", infer_body(), **{"X-Request-Id": "boom"})
    assert ok.status_code == 200 and ok.headers["X-Request-Id"] == "two-outputs"
    assert failed.status_code == 500

    path = predictions_file(gateway_volume)
    records = wait_for(
        lambda: len(read_jsonl(path)) >= 3 and read_jsonl(path), 10, what="3 prediction records"
    )
    for record in records:
        schema.check(schema.PREDICTION, record)
    by_request: dict[str, list[dict[str, object]]] = {}
    for record in records:
        by_request.setdefault(str(record["requestId"]), []).append(record)

    outputs = sorted(by_request["two-outputs"], key=lambda r: int(str(r["outputIndex"])))
    assert [r["outputName"] for r in outputs] == ["sum", "count"]
    assert [r["value"] for r in outputs] == ok.json()["outputs"]
    assert {(r["modelName"], r["modelVersion"], r["provider"], r["status"]) for r in outputs} == {
        ("adder", "2", "rest", "ok")
    }
    assert all(r["timeTakenInMs"] > 0 and "inputs" not in r for r in outputs)
    (error,) = by_request["boom"]
    assert (error["status"], error["httpStatus"], error["value"]) == ("error", 500, None)
    assert error["error"]
    assert len({r["predictionId"] for r in records}) == len(records)


def test_inputs_are_recorded_when_asked(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway_volume.settings["gateway"]["reporting"]["inputs"] = "all"
    gateway_volume.write()
    gateway = start_gateway()
    body = infer_body()
    assert gateway.infer("adder", body, version="1").status_code == 200

    path = predictions_file(gateway_volume)
    (record,) = wait_for(lambda: read_jsonl(path), 10, what="a prediction record")
    schema.check(schema.PREDICTION, record)
    assert record["inputs"] == body["inputs"]


def test_inputs_are_recorded_with_errors_too(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway_volume.settings["gateway"]["reporting"]["inputs"] = "all"
    gateway_volume.write()
    gateway = start_gateway()
    body = infer_body()
    assert gateway.infer("failing", body).status_code == 500

    path = predictions_file(gateway_volume)
    (record,) = wait_for(lambda: read_jsonl(path), 10, what="a prediction record")
    assert record["status"] == "error"
    assert record["inputs"] == body["inputs"]  # the request's, not the error answer's


def test_metrics_count_requests_by_model_version_provider_and_status(
    start_gateway: Callable[..., Gateway],
) -> None:
    gateway = start_gateway()
    for _ in range(3):
        assert gateway.infer("adder", infer_body(), version="1").status_code == 200
    assert gateway.infer("made-up-name", infer_body()).status_code == 404

    def metrics() -> str:
        return requests.get(gateway.url + "/metrics", timeout=10).text

    text = metrics()
    assert (
        'modelsync_gateway_requests_total{model="adder",provider="rest",status="200",version="1"} 3.0' in text
    )
    # A name the server does not know is not a label value: anyone could mint those.
    assert "made-up-name" not in text
    assert (
        'modelsync_gateway_requests_total{model="unknown",provider="rest",status="404",version="unknown"} 1.0'
        in text
    )
    assert "modelsync_gateway_model_service_duration_seconds_count" in text
    sent = 'modelsync_gateway_reporter_sent_total{sink="file"} 4.0'
    wait_for(lambda: sent in metrics(), 10, what=sent)
    assert 'modelsync_gateway_reporter_dropped_total{sink="file"}' not in metrics() or (
        'modelsync_gateway_reporter_dropped_total{sink="file"} 0.0' in metrics()
    )
    assert json.loads(requests.get(gateway.url + "/healthz", timeout=5).text) == {"status": "ok"}
