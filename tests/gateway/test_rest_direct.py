"""Ordinary REST ``infer`` posts are served below Flask (``gateway/direct.py``): which requests
take that way, and that both ways answer alike and leave the same records and metrics.

Over gunicorn, a post with a ``Content-Length`` takes the direct route and the same post chunked
is Flask's (the first tests prove which way each request goes)."""

from __future__ import annotations

import io
import json
import logging
import re
import socket
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import requests
import tritonclient.http as triton_http
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families

from devstack.modelserver import ModelServer
from gateway.app import create_app
from gateway.direct import DirectInfer
from modelsync.names import is_request_id
from modelsync.web import BODY_CUT_SHORT
from tests.support import directroute
from tests.support.directroute import FlaskCalls
from tests.support.gateway import Gateway, infer_body, read_jsonl
from tests.support.helpers import wait_for
from tests.support.rawhttp import connect, read_answer
from tests.support.volume import Volume

LIMIT = 4096  # the in-process app's body limit
BODY = json.dumps(infer_body()).encode()
# Each worker labels metrics by the model versions it has seen answer (gateway/inference.py:
# ModelLabels): with one, a direct post and a chunked one are counted under the same labels.
ONE_WORKER = {"MODELSYNC_GATEWAY_WORKERS": "1"}
HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def app(gateway_volume: Volume) -> Flask:
    gateway_volume.settings["gateway"]["rest"] = {"max_body_bytes": LIMIT}
    gateway_volume.write()
    return create_app({"CONFIG_PATH": str(gateway_volume.config_path), "TESTING": True})


def post_chunked(app: Flask, path: str, body: bytes, **headers: str) -> Any:
    return directroute.post_chunked(app, path, body, headers)


def padded(total: int) -> bytes:
    """An infer body of exactly ``total`` bytes."""
    data = BODY[:-1] + b" " * (total - len(BODY)) + b"}"
    assert len(data) == total
    return data


def test_ordinary_infer_posts_are_answered_without_flask(app: Flask) -> None:
    calls = FlaskCalls(app, DirectInfer)
    client = app.test_client()
    cases = [
        ("/v2/models/adder/infer", BODY, {}, 200),
        ("/v2/models/adder/versions/1/infer", BODY, {}, 200),
        ("/v2/models/adder/versions/2/infer?trace=1", BODY, {}, 200),
        ("/v2/models/adder/infer", padded(LIMIT), {}, 200),  # the limit itself is within it
        ("/v2/models/nope/infer", BODY, {}, 404),  # the model server's answers, whichever way
        ("/v2/models/adder/versions/9/infer", BODY, {}, 404),
        ("/v2/models/adder/infer", b"{not json", {}, 422),
        ("/v2/models/adder/infer", BODY, {"Inference-Header-Content-Length": "99999"}, 400),
    ]
    for path, body, headers, status in cases:
        answer = client.post(path, data=body, headers=headers)
        assert answer.status_code == status, (path, answer.data)
        assert "error" in answer.json if status != 200 else answer.json["outputs"], answer.data
    assert calls.paths == []


@pytest.mark.parametrize(
    ("method", "target", "headers", "body", "status"),
    [
        ("POST", "/v2/models/adder/infer", {}, padded(LIMIT + 1), 413),
        ("POST", "/v2/models/-adder/infer", {}, BODY, 400),
        ("POST", "/v2/models/adder/versions/_1/infer", {}, BODY, 400),
        ("POST", "/v2/models/adder%2Fversions%2F1/infer", {}, BODY, 400),
        ("POST", "/v2/models/%61dder/infer", {}, BODY, 200),  # Flask routes it decoded
        ("POST", "/v2/models/adder/infer/", {}, BODY, 404),
        ("POST", "/v2//models/adder/infer", {}, BODY, 308),
        ("GET", "/v2/models/adder/infer", {}, None, 405),
        ("GET", "/v2/models/adder", {}, None, 200),
        ("POST", "/v2/models/adder", {}, BODY, 405),
        ("GET", "/healthz", {}, None, 200),
    ],
    ids=[
        "over-limit",
        "bad-model",
        "bad-version",
        "encoded-slash",
        "encoded-letter",
        "trailing-slash",
        "double-slash",
        "get-infer",
        "metadata",
        "post-metadata",
        "healthz",
    ],
)
def test_every_other_request_is_flasks(
    app: Flask, method: str, target: str, headers: dict[str, str], body: bytes | None, status: int
) -> None:
    answer = directroute.answered_by_flask(app, DirectInfer, method, target, headers, body)
    assert answer.status_code == status, answer.data


def test_a_chunked_post_is_flasks_and_answered(app: Flask) -> None:
    calls = FlaskCalls(app, DirectInfer)
    answer = post_chunked(app, "/v2/models/adder/infer", BODY)
    assert answer.status_code == 200 and answer.json["outputs"], answer.data
    assert calls.paths == ["/v2/models/adder/infer"]


def test_an_absolute_target_or_odd_framing_is_flasks(app: Flask) -> None:
    calls = FlaskCalls(app, DirectInfer)
    client = app.test_client()
    absolute = "http://x/v2/models/adder/infer"
    answer = client.post(
        "/v2/models/adder/infer", data=BODY, environ_overrides={"RAW_URI": absolute, "REQUEST_URI": absolute}
    )
    assert answer.status_code == 200, answer.data
    # gunicorn refuses such a head itself; another WSGI server may pass it on.
    answer = client.post(
        "/v2/models/adder/infer",
        input_stream=io.BytesIO(BODY),
        environ_overrides={"CONTENT_LENGTH": "9" * 5000},
    )
    assert "error" in answer.json, answer.data  # whatever Flask makes of it: not ours
    # Both framings (gunicorn refuses that too): the length is not the body's for sure.
    answer = client.post("/v2/models/adder/infer", data=BODY, headers={"Transfer-Encoding": "chunked"})
    assert answer.status_code in (200, 422), answer.data
    assert calls.paths == ["/v2/models/adder/infer"] * 3


def test_an_unexpected_failure_is_the_same_json_500_both_ways(
    app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    class BrokenLabels:
        def of(self, model: str, version: str | None, status: int) -> tuple[str, str]:
            raise RuntimeError("not a failure the predictor expects")

    app.extensions["predictor"].labels = BrokenLabels()
    caplog.set_level(logging.ERROR)
    direct = app.test_client().post("/v2/models/adder/infer", data=BODY)
    chunked = post_chunked(app, "/v2/models/adder/infer", BODY)
    for answer in (direct, chunked):
        assert (answer.status_code, answer.json) == (500, {"error": "internal error"})
        assert "X-Request-Id" not in answer.headers
    assert direct.data == chunked.data and direct.status == chunked.status
    assert caplog.text.count("unhandled RuntimeError while serving a request") == 2


def test_a_binary_header_of_thousands_of_digits_is_the_same_400_both_ways(app: Flask) -> None:
    # Past 4300 digits int() refuses even ASCII digits: that was a 500 either way.
    for value in ("9" * 5000, "1" + "0" * 4400):
        header = {"Inference-Header-Content-Length": value}
        direct = app.test_client().post("/v2/models/adder/infer", data=BODY, headers=header)
        chunked = post_chunked(app, "/v2/models/adder/infer", BODY, **header)
        for answer in (direct, chunked):
            assert answer.status_code == 400, (value[:5], answer.data)
            assert "is not a byte count" in answer.json["error"] and len(answer.data) < 200
        assert direct.data == chunked.data


# Over real gunicorn and MLServer.

Metrics = dict[tuple[str, frozenset[tuple[str, str]]], float]
COUNTED = (
    "modelsync_gateway_requests_total",
    "modelsync_gateway_request_duration_seconds_count",
    "modelsync_gateway_model_service_duration_seconds_count",
)


def metrics(gateway: Gateway) -> Metrics:
    text = requests.get(f"{gateway.url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name in COUNTED
    }


def post(gateway: Gateway, path: str, body: bytes, chunked: bool, headers: dict[str, str]) -> Any:
    """The post and what it added to the metrics."""
    before = metrics(gateway)
    answer = requests.post(
        gateway.url + path,
        data=iter([body]) if chunked else body,
        headers={"Content-Type": "application/json", **headers},
        timeout=15,
    )
    assert (answer.request.headers.get("Transfer-Encoding") == "chunked") == chunked
    after = metrics(gateway)
    added = {key: value - before.get(key, 0.0) for key, value in after.items() if value != before.get(key)}
    return answer, added


def comparable(answer: requests.Response) -> tuple[Any, ...]:
    """Status line, content type, binary header, body (the model server's own ids left out)."""
    header = answer.headers.get("Inference-Header-Content-Length")
    cut = int(header) if header is not None else len(answer.content)
    document = json.loads(answer.content[:cut])
    document.pop("id", None)
    return (
        answer.status_code,
        answer.reason,
        answer.headers["Content-Type"],
        header,
        document,
        answer.content[cut:],
        sorted(answer.headers.keys() - {"Date", "Server", "Connection", "Keep-Alive"}),
    )


def record_fields(records: list[dict[str, Any]], request_id: str) -> list[str]:
    varying = {"predictionId", "requestId", "requestTimestamp", "responseTimestamp", "timeTakenInMs"}
    return sorted(
        json.dumps({k: v for k, v in r.items() if k not in varying}, sort_keys=True)
        for r in records
        if r["requestId"] == request_id
    )


def compare_both_ways(
    gateway: Gateway,
    volume: Volume,
    cases: dict[str, tuple[str, bytes, dict[str, str], int]],
    refused: frozenset[str] = frozenset(),
) -> list[tuple[requests.Response, requests.Response]]:
    """Each case with a Content-Length (direct) and chunked (Flask): the same answer, request id
    handling, metrics and records (none for the ``refused`` cases, which never reach the model
    server). ``{way}`` in a header's value is "direct" or "chunked"."""
    pairs = []
    for name, (path, body, headers, status) in cases.items():
        answers = []
        for way, chunked in (("direct", False), ("chunked", True)):
            sent = {key: value.format(way=way) for key, value in headers.items()}
            answer, added = post(gateway, path, body, chunked, sent)
            given = sent.get("X-Request-Id", "")
            expected = given if is_request_id(given) else "a new id"
            request_id = answer.headers["X-Request-Id"]
            assert request_id == expected or HEX_ID.fullmatch(request_id), (name, way, request_id)
            answers.append((answer, added))
        (direct, direct_added), (chunked, chunked_added) = answers
        assert comparable(direct) == comparable(chunked), name
        assert direct.status_code == status, (name, direct.text)
        assert direct_added == chunked_added, (name, direct_added, chunked_added)
        assert bool(direct_added) == (name not in refused), (name, direct_added)
        pairs.append((direct, chunked))
    path = volume.root / "predictions" / "predictions.jsonl"
    wanted = {
        answer.headers["X-Request-Id"]
        for name, pair in zip(cases, pairs, strict=True)
        for answer in pair
        if name not in refused
    }
    records = wait_for(
        lambda: wanted <= {r["requestId"] for r in read_jsonl(path)} and read_jsonl(path),
        15,
        what="every request's records",
    )
    for name, (direct, chunked) in zip(cases, pairs, strict=True):
        fields = record_fields(records, direct.headers["X-Request-Id"])
        assert fields == record_fields(records, chunked.headers["X-Request-Id"]), name
        assert bool(fields) == (name not in refused), (name, fields)
    return pairs


def test_under_gunicorn_both_ways_answer_alike(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(**ONE_WORKER)
    shape = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [6], "data": [1] * 6}]})
    cases = {
        # Refused by the gateway, first: the later records' arrival shows it left none.
        "bad binary header": ("/v2/models/adder/infer", BODY, {"Inference-Header-Content-Length": "x"}, 400),
        "ok": ("/v2/models/adder/infer", BODY, {}, 200),
        "version": ("/v2/models/adder/versions/2/infer", BODY, {}, 200),
        "query": ("/v2/models/adder/versions/1/infer?x=1", BODY, {}, 200),
        "unknown model": ("/v2/models/nope/infer", BODY, {}, 404),
        "unknown version": ("/v2/models/adder/versions/9/infer", BODY, {}, 404),
        "bad shape": ("/v2/models/adder/versions/1/infer", shape.encode(), {}, 400),
        "not JSON": ("/v2/models/adder/infer", b"{not json", {}, 422),
        "model fails": ("/v2/models/failing/infer", BODY, {}, 500),
    }
    # Each request its own id, so that its records can be told apart.
    for index, (name, (path, body, headers, status)) in enumerate(list(cases.items())):
        cases[name] = (path, body, {**headers, "X-Request-Id": f"{{way}}-{index}"}, status)
    compare_both_ways(gateway, gateway_volume, cases, refused=frozenset({"bad binary header"}))


def test_under_gunicorn_request_ids_are_handled_alike(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway(**ONE_WORKER)
    cases = {
        "given": ("/v2/models/adder/infer", BODY, {"X-Request-Id": "given-{way}"}, 200),
        "none": ("/v2/models/adder/infer", BODY, {}, 200),
        "not passed on": ("/v2/models/adder/infer", BODY, {"X-Request-Id": "has a space {way}"}, 200),
    }
    (given, _), (none, _), (refused, _) = compare_both_ways(gateway, gateway_volume, cases)
    assert given.headers["X-Request-Id"] == "given-direct"
    assert HEX_ID.fullmatch(none.headers["X-Request-Id"])
    assert HEX_ID.fullmatch(refused.headers["X-Request-Id"])


def test_model_server_down_is_503_both_ways(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway_volume.settings["gateway"]["model_service"]["url"] = "http://127.0.0.1:9"  # discard: refused
    gateway_volume.write()
    gateway = start_gateway(**ONE_WORKER)
    cases = {"down": ("/v2/models/adder/infer", BODY, {"X-Request-Id": "down-{way}"}, 503)}
    ((direct, _),) = compare_both_ways(gateway, gateway_volume, cases)
    assert "refused" in direct.json()["error"]


def test_binary_tensors_both_ways(
    gateway_volume: Volume, model_server: ModelServer, start_gateway: Callable[..., Gateway]
) -> None:
    # MLServer's REST API does not take binary tensors: the gateway's gRPC adapter does.
    gateway_volume.settings["gateway"]["model_service"].update(
        protocol="grpc", grpc_target=model_server.grpc_target
    )
    gateway_volume.write()
    gateway = start_gateway(**ONE_WORKER)
    rows = triton_http.InferInput("x", [2, 3], "FP32")
    rows.set_data_from_numpy(np.array([[1, 2, 3], [4, 5, 6]], dtype=np.float32), binary_data=True)
    outputs = [triton_http.InferRequestedOutput(name, binary_data=True) for name in ("sum", "count")]
    body, json_length = triton_http.InferenceServerClient.generate_request_body([rows], outputs)
    header = {"Inference-Header-Content-Length": str(json_length), "X-Request-Id": "bin-{way}"}
    cases = {"binary": ("/v2/models/adder/versions/2/infer", body, header, 200)}
    ((direct, _),) = compare_both_ways(gateway, gateway_volume, cases)
    length = int(direct.headers["Inference-Header-Content-Length"])
    assert length < len(direct.content)  # binary outputs follow the JSON header
    result = triton_http.InferenceServerClient.parse_response_body(direct.content, header_length=length)
    assert result.as_numpy("sum").tolist() == [12.0, 30.0]


def test_a_body_that_ends_before_its_length_is_408_both_ways(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    # Past BUFFER_BYTES a thread reads the body. Cut there, the body is complete JSON: taking it
    # would run the model on what the client never finished sending. The absolute form is the
    # Flask view's, with the same head.
    gateway_volume.settings["gateway"]["rest"] = {"max_body_bytes": 3 * 1024 * 1024}
    gateway_volume.write()
    gateway = start_gateway(MODELSYNC_GATEWAY_BUFFER_BYTES="100000")
    sent = padded(200_000)
    before = metrics(gateway)
    heads = []
    for target in ("/v2/models/adder/infer", "http://x/v2/models/adder/infer"):
        head = f"POST {target} HTTP/1.1\r\nHost: x\r\nX-Request-Id: cut\r\n"
        with connect(gateway.url) as sock:
            sock.sendall(f"{head}Content-Length: 2000000\r\n\r\n".encode() + sent)
            sock.shutdown(socket.SHUT_WR)  # the client stops sending, and still reads
            answer, _ = read_answer(sock)
        assert (answer.status, json.loads(answer.body)) == (408, {"error": BODY_CUT_SHORT}), target
        assert answer.head.startswith("HTTP/1.1 408 REQUEST TIMEOUT\r\n"), answer.head
        heads.append(sorted(line for line in answer.head.split("\r\n") if not line.startswith("Date:")))
    assert heads[0] == heads[1]
    assert metrics(gateway) == before  # no model call, nothing counted
    # Nothing recorded: a later call's record is there alone.
    assert gateway.infer("adder", infer_body(), **{"X-Request-Id": "after"}).status_code == 200
    path = gateway_volume.root / "predictions" / "predictions.jsonl"
    records = wait_for(lambda: read_jsonl(path), 15, what="the later call's record")
    assert {r["requestId"] for r in records} == {"after"}
