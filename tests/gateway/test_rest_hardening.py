"""The REST provider under hostile clients, against real gunicorn and a real model server:
chunked bodies over the limit, encoded slashes in model names, slow clients."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator

import requests

from tests.support.gateway import Gateway, infer_body, read_jsonl
from tests.support.helpers import wait_for
from tests.support.rawhttp import connect, raw_exchange, read_answer
from tests.support.slowclients import slow_clients
from tests.support.volume import Volume

JSON_HEADERS = {"Content-Type": "application/json"}


def predictions(volume: Volume) -> list[dict[str, object]]:
    return read_jsonl(volume.root / "predictions" / "predictions.jsonl")


def model_service_calls(gateway: Gateway) -> float:
    text = requests.get(gateway.url + "/metrics", timeout=10).text
    found = re.findall(
        r"^modelsync_gateway_model_service_duration_seconds_count\{[^}]*\} ([0-9.e+]+)$", text, re.M
    )
    return sum(float(n) for n in found)


def padded_infer_body(total: int) -> bytes:
    body = infer_body(id="")
    size = len(json.dumps(body).encode())
    body["id"] = "x" * (total - size)
    data = json.dumps(body).encode()
    assert len(data) == total
    return data


def in_chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_chunked_body_over_the_limit_is_413_and_nothing_is_forwarded(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway_volume.settings["gateway"]["rest"] = {"max_body_bytes": 4096}
    gateway_volume.write()
    gateway = start_gateway()
    url = gateway.url + "/v2/models/adder/infer"
    for total in (4097, 64 * 1024, 3 * 1024 * 1024):
        answer = requests.post(
            url, data=in_chunks(padded_infer_body(total)), headers=JSON_HEADERS, timeout=30
        )
        assert answer.status_code == 413, (total, answer.status_code, answer.text)
        assert "4096" in answer.json()["error"]
    assert model_service_calls(gateway) == 0
    # At the limit a chunked body goes through; its record is the only one written.
    answer = requests.post(
        url, data=in_chunks(padded_infer_body(4096), 1000), headers=JSON_HEADERS, timeout=30
    )
    assert answer.status_code == 200, answer.text
    records = wait_for(lambda: predictions(gateway_volume), 10, what="the prediction records")
    assert len({r["requestId"] for r in records}) == 1 and model_service_calls(gateway) == 1


def raw_post(gateway: Gateway, target: str, body: bytes) -> tuple[int, bytes]:
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return raw_exchange(gateway.url, head.encode() + body)


def test_an_encoded_slash_in_a_model_name_or_version_is_400(start_gateway: Callable[..., Gateway]) -> None:
    gateway = start_gateway()
    body = json.dumps(infer_body()).encode()
    for target in (
        "/v2/models/adder%2Fversions%2F1/infer",
        "/v2/models/a%2Fb/infer",
        "/v2/models/adder%2fversions%2f1/infer",
        "/v2/models/adder/versions/1%2F..%2F2/infer",
        "/v2/models/adder%2Fversions%2F1",
        "/v2/models/adder%2Fversions%2F1/ready",
    ):
        method_body = body if target.endswith("/infer") else b""
        status, answer = raw_post(gateway, target, method_body) if method_body else raw_get(gateway, target)
        assert status == 400, (target, status, answer)
        assert "%2F" in json.loads(answer)["error"], answer
    assert model_service_calls(gateway) == 0
    assert raw_post(gateway, "/v2/models/adder/versions/1/infer", body)[0] == 200


def raw_get(gateway: Gateway, target: str) -> tuple[int, bytes]:
    return raw_exchange(
        gateway.url, f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    )


SLOW = {"idle": 40, "line": 40, "head": 40, "body": 40}  # 160 connections at once
BOUND = 4.0  # seconds, head and body (the gateway's defaults are 10 and 60)
SLACK = 3.0


def test_slow_clients_neither_starve_inference_nor_stay_connected(
    start_gateway: Callable[..., Gateway],
) -> None:
    gateway = start_gateway(
        MODELSYNC_GATEWAY_THREADS="4",  # fewer threads than slow clients of any one kind
        MODELSYNC_GATEWAY_HEAD_TIMEOUT=str(BOUND),
        MODELSYNC_GATEWAY_BODY_TIMEOUT=str(BOUND),
    )
    with slow_clients(gateway.url, SLOW, path="/v2/models/adder/infer") as clients:
        took = []
        for _ in range(10):
            started = time.monotonic()
            answer = gateway.infer("adder", infer_body(), version="1")
            assert answer.status_code == 200, answer.text
            took.append(time.monotonic() - started)
        assert max(took) < 2.0, took
        assert clients.open_count() > 0.9 * sum(SLOW.values()), "slow clients closed too early"
        wait_for(lambda: clients.open_count() == 0, BOUND + 2 * SLACK, what="slow clients cut off")
    for kind in SLOW:
        lifetimes = clients.lifetimes(kind)
        assert len(lifetimes) == SLOW[kind] and max(lifetimes) <= BOUND + SLACK, (kind, max(lifetimes))
    assert model_service_calls(gateway) == 10
    cut = {kind: round(max(clients.lifetimes(kind)), 1) for kind in SLOW}
    print(f"\ngateway slow clients: {sum(SLOW.values())} open, infer max {max(took):.3f}s, cut after {cut}")


# -- found by the adversarial pass on 2026-12-06 ---------------------------------------------
def test_a_malformed_chunked_body_or_binary_header_is_a_4xx_not_a_500(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway = start_gateway()
    head = "POST /v2/models/adder/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    chunked = (head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode()
    for body in (b"zz\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n", b"2\r\n{}\r\n0\r\nBad Name: x\r\n\r\n"):
        status, answer = raw_exchange(gateway.url, chunked + body)
        assert status == 400, (body, status, answer)
    payload = json.dumps(infer_body()).encode()
    for value in (b"\xb2", b"\xb9", b"\xd9\xa3"):  # superscript two and one, Arabic-Indic three
        request = head.encode() + b"Inference-Header-Content-Length: " + value + b"\r\n"
        request += b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(payload) + payload
        status, answer = raw_exchange(gateway.url, request)
        assert status == 400 and b"is not a byte count" in answer, (value, status, answer)
    assert "Traceback" not in gateway.proc.log


def expecting(target: str, length: int) -> bytes:
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    return f"{head}Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()


def test_expect_100_continue_refused_from_the_head_is_a_4xx_without_inviting_the_body(
    gateway_volume: Volume, start_gateway: Callable[..., Gateway]
) -> None:
    gateway_volume.settings["gateway"]["rest"] = {"max_body_bytes": 4096}
    gateway_volume.write()
    gateway = start_gateway()
    infer = "/v2/models/adder/infer"
    refused = {
        # Under the worker's buffer (8 MiB), and over it (where the thread sent the 100).
        (infer, 4097): (413, "4096"),
        (infer, 9 * 1024 * 1024): (413, "4096"),
        # A name the gateway does not pass on.
        ("/v2/models/-adder/infer", 10): (400, "invalid model name"),
        ("/v2/models/adder/versions/1%20x/infer", 10): (400, "invalid model version"),
    }
    for (target, length), (status, reason) in refused.items():
        with connect(gateway.url, timeout=5.0) as sock:
            sock.sendall(expecting(target, length))
            answer, _ = read_answer(sock)
        assert answer.status == status and reason in json.loads(answer.body)["error"], (target, answer)
    body = json.dumps(infer_body()).encode()
    with connect(gateway.url, timeout=5.0) as sock:
        sock.sendall(expecting(infer, len(body)))
        interim, _ = read_answer(sock)
        assert interim.status == 100, interim
        sock.sendall(body)
        final, _ = read_answer(sock)
    assert final.status == 200, final
    assert model_service_calls(gateway) == 1
