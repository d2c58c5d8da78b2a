"""The webhook's HTTP front under hostile clients, against real gunicorn processes: chunked
bodies over the limit, strings JSON can carry but UTF-8 cannot, encoded slashes in the path,
and slow clients (see tests/support/slowclients.py)."""

from __future__ import annotations

import copy
import json
import socket
import subprocess
import time
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.helpers import minio_event, wait_for
from tests.support.intents import intents_on_disk
from tests.support.processes import Webhook, child_env
from tests.support.rawhttp import raw_exchange
from tests.support.s3 import Bucket
from tests.support.slowclients import slow_clients
from tests.support.volume import TOKEN, Volume
from webhook import gunicorn_command

AUTH = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


def chunks(data: bytes, size: int = 64 * 1024) -> Any:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def padded_event(bucket: str, total: int) -> bytes:
    """A valid event whose JSON text is ``total`` bytes long (padding in a field MinIO sends)."""
    event = minio_event(bucket, "m/1/model.bin")
    event["Records"][0]["source"]["userAgent"] = ""
    size = len(json.dumps(event).encode())
    event["Records"][0]["source"]["userAgent"] = "x" * (total - size)
    body = json.dumps(event).encode()
    assert len(body) == total
    return body


def test_chunked_body_over_the_limit_is_413_and_writes_nothing(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    volume.settings["webhook"]["max_body_bytes"] = 4096
    volume.write()
    webhook = start_webhook()
    # Valid JSON up to the limit would be accepted if the server cut the body there: it must not.
    for total in (4097, 64 * 1024, 3 * 1024 * 1024):
        body = padded_event(bucket.name, total)
        answer = requests.post(webhook.url + "/minio/events", data=chunks(body), headers=AUTH, timeout=30)
        assert answer.status_code == 413, (total, answer.status_code, answer.text)
        assert "4096" in answer.json()["error"]
    assert not intents_on_disk(volume.intents)
    # At the limit, chunked is as good as Content-Length.
    body = padded_event(bucket.name, 4096)
    answer = requests.post(webhook.url + "/minio/events", data=chunks(body, 1000), headers=AUTH, timeout=30)
    assert answer.status_code == 200, answer.text
    assert len(intents_on_disk(volume.intents)) == 1


# -- strings JSON can carry and UTF-8 cannot ----------------------------------------------
def string_fields(document: Any, path: str = "") -> list[str]:
    """The path (``Records[0].s3.object.key``) of every string value in ``document``."""
    if isinstance(document, dict):
        return [p for name, v in document.items() for p in string_fields(v, f"{path}.{name}".lstrip("."))]
    if isinstance(document, list):
        return [p for i, v in enumerate(document) for p in string_fields(v, f"{path}[{i}]")]
    return [path] if isinstance(document, str) else []


def parent_of(document: Any, path: str) -> tuple[Any, str | int]:
    """The container holding the value at ``path``, and its name or index there."""
    parts: list[str | int] = [
        int(p[1:-1]) if p.startswith("[") else p for p in path.replace("[", ".[").split(".") if p
    ]
    target = document
    for part in parts[:-1]:
        target = target[part]
    return target, parts[-1]


def post_raw_json(webhook: Webhook, text: str) -> requests.Response:
    return requests.post(webhook.url + "/minio/events", data=text.encode(), headers=AUTH, timeout=10)


def test_escaped_surrogate_in_the_key_is_400_naming_the_field(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook()
    template = json.dumps(minio_event(bucket.name, "m/1/model.bin"))
    for key in ("m%2F1%2F\\ud800", "m/1/\\udfff.bin", "m/1/a\\ud800\\u0041"):
        text = template.replace('"m%2F1%2Fmodel.bin"', f'"{key}"')
        answer = post_raw_json(webhook, text)
        assert answer.status_code == 400, (key, answer.status_code, answer.text)
        assert answer.json()["field"] == "Records[0].s3.object.key"
    assert not intents_on_disk(volume.intents)
    assert "Traceback" not in webhook.proc.log


SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)


@st.composite
def surrogate_text(draw: st.DrawFn) -> str:
    """A string with at least one lone surrogate, anywhere in it."""
    head = draw(st.text(max_size=8))
    tail = draw(st.text(max_size=8))
    return head + draw(SURROGATE) + tail


def test_a_lone_surrogate_in_any_string_field_is_400_naming_it(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook()
    event = minio_event(bucket.name, "m/1/model.bin", etag="0" * 32, size=3)
    fields = string_fields(event)
    assert "Records[0].s3.object.key" in fields and len(fields) > 20
    session = requests.Session()
    seen: set[str] = set()

    @settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(field=st.sampled_from(fields), value=surrogate_text(), in_name=st.booleans())
    def one(field: str, value: str, in_name: bool) -> None:
        document = copy.deepcopy(event)
        container, name = parent_of(document, field)
        if in_name and isinstance(container, dict):
            # The surrogate in a member's name, which the answer spells with backslash escapes.
            container[value] = "x"
            escaped = value.encode("utf-8", "backslashreplace").decode()
            expected = field.rsplit(".", 1)[0] + "." + escaped if "." in field else escaped
        else:
            container[name] = value
            expected = field
        answer = session.post(webhook.url + "/minio/events", data=json.dumps(document), headers=AUTH)
        assert answer.status_code == 400, (field, value, answer.status_code, answer.text)
        assert answer.json()["field"] == expected, (field, answer.json())
        seen.add(field)

    one()
    assert not intents_on_disk(volume.intents)
    assert "Traceback" not in webhook.proc.log
    assert len(seen) >= 10


# -- the path as sent, not as decoded ------------------------------------------------------
def raw_request(url: str, request_line: str, body: bytes = b"") -> tuple[int, bytes]:
    head = f"{request_line}\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    return raw_exchange(url, head.encode() + body)


def test_an_encoded_slash_in_the_path_is_400(volume: Volume, bucket: Bucket, start_webhook) -> None:
    webhook = start_webhook()
    body = json.dumps(minio_event(bucket.name, "m/1/model.bin")).encode()
    for target in ("/minio%2Fevents", "/minio%2fevents", "/v1%2Fresync"):
        status, answer = raw_request(webhook.url, f"POST {target} HTTP/1.1", body)
        assert status == 400, (target, status, answer)
        assert "%2F" in json.loads(answer)["error"]
    assert not intents_on_disk(volume.intents)
    status, _ = raw_request(webhook.url, "POST /minio/events HTTP/1.1", body)
    assert status == 200


# -- slow clients --------------------------------------------------------------------------
SLOW = {"idle": 75, "line": 75, "head": 75, "body": 75}  # 300 connections at once
BOUND = 4.0  # seconds, for the head and for the body (the defaults are 10 and 10)
SLACK = 3.0  # the server checks deadlines every 0.25-1 s; this test's thread every 1 s


def event_answer_seconds(webhook: Webhook, bucket: Bucket, key: str) -> float:
    """A real event's round trip, which must be a 200; a starved server fails on the timeout."""
    started = time.monotonic()
    answer = webhook.post_event(minio_event(bucket.name, key))
    assert answer.status_code == 200, answer.text
    return time.monotonic() - started


def test_hundreds_of_slow_clients_neither_starve_the_events_nor_stay_connected(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook(
        MODELSYNC_WEBHOOK_HEAD_TIMEOUT=str(BOUND), MODELSYNC_WEBHOOK_BODY_TIMEOUT=str(BOUND)
    )
    with slow_clients(webhook.url, SLOW) as clients:
        assert clients.open_count() == sum(SLOW.values())
        # Every event is answered while the slow ones hold their connections open.
        rounds = [event_answer_seconds(webhook, bucket, f"m/1/part-{i}.bin") for i in range(20)]
        assert clients.open_count() > 0.9 * sum(SLOW.values()), "slow clients closed too early"
        assert max(rounds) < 2.0, rounds
        assert requests.get(webhook.url + "/healthz", timeout=5).ok
        # And the server cuts each of them off within its bound.
        wait_for(lambda: clients.open_count() == 0, BOUND + 2 * SLACK, what="slow clients cut off")
    for kind in SLOW:
        lifetimes = clients.lifetimes(kind)
        assert len(lifetimes) == SLOW[kind] and max(lifetimes) <= BOUND + SLACK, (kind, max(lifetimes))
    # A client that had sent part of a request learns why.
    assert all(c.answer.startswith(b"HTTP/1.1 408 ") for c in clients.clients if c.kind != "idle")
    assert len(intents_on_disk(volume.intents)) == 20
    cut = {kind: round(max(clients.lifetimes(kind)), 1) for kind in SLOW}
    print(
        f"\nslow clients: {sum(SLOW.values())} open, event round trip max {max(rounds):.3f}s, cut after {cut}"
    )


def test_clients_that_never_close_after_connection_close_do_not_stall_the_server(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    # gunicorn half-closes such a connection and waits up to 2 s for the client to close its
    # side; done in the event loop with a blocking read, 60 of them stalled it for a minute.
    webhook = start_webhook()
    host, port = webhook.url.removeprefix("http://").split(":")
    lingering = []
    try:
        for _ in range(60):
            sock = socket.create_connection((host, int(port)), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            lingering.append(sock)
        rounds = [event_answer_seconds(webhook, bucket, f"m/1/after-close-{i}.bin") for i in range(10)]
        assert max(rounds) < 2.0, rounds
        # Each of them got its answer, and the server closed its side.
        for sock in lingering:
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    finally:
        for sock in lingering:
            sock.close()


def test_a_body_over_the_buffer_that_stalls_is_cut_at_the_same_deadline(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    # Past BUFFER_BYTES a thread reads the rest: each of its reads still ends at the deadline.
    volume.settings["webhook"]["max_body_bytes"] = 3 * 1024 * 1024
    volume.write()
    webhook = start_webhook(
        MODELSYNC_WEBHOOK_BUFFER_BYTES="100000", MODELSYNC_WEBHOOK_BODY_TIMEOUT=str(BOUND)
    )
    host, port = webhook.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=BOUND + 2 * SLACK) as sock:
        head = f"POST /minio/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        sock.sendall(f"{head}Content-Length: 2000000\r\n\r\n".encode() + b"{" + b" " * 500_000)
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        waited = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert "not received in full" in json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"]
    assert waited <= BOUND + SLACK, waited
    assert "Traceback" not in webhook.proc.log


def test_a_bad_bound_stops_gunicorn_with_one_line_and_exit_2(volume: Volume) -> None:
    for name, value in (
        ("HEAD_TIMEOUT", "soon"),
        ("BODY_TIMEOUT", "0"),
        ("BUFFER_BYTES", "1.5"),
        ("THREADS", "-1"),
    ):
        variable = f"MODELSYNC_WEBHOOK_{name}"
        result = subprocess.run(
            gunicorn_command(),
            env=child_env(volume, MODELSYNC_WEBHOOK_BIND="127.0.0.1:0", **{variable: value}),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, (variable, result.returncode, result.stderr)
        assert f"configuration error: environment: {variable}='{value}': expected a positive" in result.stderr
        assert "Traceback" not in result.stderr


# -- found by the adversarial pass on 2026-12-06 ---------------------------------------------
def chunked_request(target: str, body: bytes, auth: bool = True) -> bytes:
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Authorization: Bearer {TOKEN}\r\n" if auth else ""
    return (head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode() + body


MALFORMED_CHUNKS = {
    "chunk size not hex": b"zz\r\n{}\r\n0\r\n\r\n",
    "no CRLF after a chunk": b"2\r\n{}XX0\r\n\r\n",
    "a trailer with a bad name": b"2\r\n{}\r\n0\r\nBad Name: x\r\n\r\n",
    "a trailer of 200 fields": b"2\r\n{}\r\n0\r\n"
    + b"".join(b"X-%d: y\r\n" % i for i in range(200))
    + b"\r\n",
}


def test_a_malformed_chunked_body_is_a_4xx_not_a_500(volume: Volume, start_webhook) -> None:
    webhook = start_webhook()
    for name, body in MALFORMED_CHUNKS.items():
        status, answer = raw_exchange(webhook.url, chunked_request("/minio/events", body))
        assert status in (400, 431), (name, status, answer)
        assert "error" in json.loads(answer), name
    assert "Traceback" not in webhook.proc.log
    assert not intents_on_disk(volume.intents)


def test_a_number_python_will_not_convert_is_400(volume: Volume, bucket: Bucket, start_webhook) -> None:
    webhook = start_webhook()
    event = json.dumps(minio_event(bucket.name, "m/1/model.bin", size=7))
    body = event.replace('"size": 7', '"size": ' + "9" * 5000, 1)
    assert "9" * 5000 in body
    answer = requests.post(webhook.url + "/minio/events", data=body, headers=AUTH, timeout=30)
    assert answer.status_code == 400, answer.text
    assert "more than 4300 digits" in answer.json()["error"]
    resync = requests.post(webhook.url + "/v1/resync", data="9" * 5000, headers=AUTH, timeout=30)
    assert resync.status_code == 400 and "set_int_max_str_digits" not in resync.text
    assert "Traceback" not in webhook.proc.log


def test_a_content_length_larger_than_any_body_is_413_at_once(volume: Volume, start_webhook) -> None:
    webhook = start_webhook()
    head = f"POST /minio/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
    for length in ("9" * 18, "9" * 19, "9" * 30):
        request = f"{head}Content-Length: {length}\r\nConnection: close\r\n\r\n".encode()
        # 5 s of patience, under the 10 s body bound that a stalled request would wait out.
        status, _ = raw_exchange(webhook.url, request, timeout=5.0)
        assert status == 413, (length, status)


def test_intents_are_refused_503_when_their_directory_is_gone_or_linked(
    volume: Volume, bucket: Bucket, start_webhook, tmp_path
) -> None:
    webhook = start_webhook()
    event = minio_event(bucket.name, "m/1/model.bin")
    assert webhook.post_event(event).status_code == 200
    state = volume.models / ".modelsync"
    moved = tmp_path / "moved-state"
    state.rename(moved)
    gone = webhook.post_event(event)
    assert gone.status_code == 503 and "cannot write intents" in gone.json()["error"], gone.text
    # A .modelsync link made after start-up, to a directory that has an intents/ of its own.
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "intents").mkdir(parents=True)
    state.symlink_to(elsewhere)
    for answer in (
        webhook.post_event(event),
        requests.post(webhook.url + "/v1/resync", json={}, headers=AUTH, timeout=10),
    ):
        assert answer.status_code == 503 and "symbolic link" in answer.json()["error"], answer.text
    assert not list((elsewhere / "intents").iterdir()), "nothing acknowledged where no agent reads"
    assert "Traceback" not in webhook.proc.log
