"""MinIO's ordinary posts are served below Flask (``webhook/direct.py``): which requests take
that way, and that both ways answer alike and leave the same intents and metrics."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from modelsync.intentbatch import GroupCommit
from modelsync.web import BODY_CUT_SHORT
from modelsync.wsgidirect import render
from tests.support import directroute
from tests.support.directroute import FlaskCalls
from tests.support.helpers import minio_event
from tests.support.intents import intents_on_disk
from tests.support.rawhttp import connect, read_answer
from tests.support.s3 import Bucket
from tests.support.volume import TOKEN, Volume
from webhook.app import create_app
from webhook.direct import DirectEvents

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def post_chunked(app: Flask, body: bytes) -> Any:
    return directroute.post_chunked(app, "/minio/events", body, AUTH)


@pytest.fixture
def app(volume: Volume) -> Flask:
    return create_app({"CONFIG_PATH": str(volume.config_path), "TESTING": True})


def test_ordinary_posts_are_answered_without_flask(app: Flask, bucket: Bucket, volume: Volume) -> None:
    calls = FlaskCalls(app, DirectEvents)
    client = app.test_client()
    event = minio_event(bucket.name, "m/1/a.bin", size=3)
    assert client.post("/minio/events", json=event, headers=AUTH).status_code == 200
    assert client.post("/minio/events?source=minio", json=event, headers=AUTH).status_code == 200
    # Refusals of the body are the intake's, whichever way the request came.
    assert client.post("/minio/events", data=b"{", headers=AUTH).status_code == 400
    unsafe = minio_event(bucket.name, "../x")
    assert client.post("/minio/events", json=unsafe, headers=AUTH).status_code == 422
    assert calls.paths == []
    assert len(intents_on_disk(volume.intents)) == 2


@pytest.mark.parametrize(
    ("method", "target", "headers", "body", "status"),
    [
        ("HEAD", "/minio/events", AUTH, None, 200),
        ("GET", "/minio/events", AUTH, None, 200),
        ("POST", "/minio/events", {}, b"{}", 401),
        ("POST", "/minio/events", {"Authorization": f"Bearer {TOKEN}x"}, b"{}", 401),
        ("POST", "/minio/events", AUTH, b"{" + b" " * 2 * 1024 * 1024, 413),
        ("POST", "/minio%2Fevents", AUTH, b"{}", 400),
        ("POST", "/v1/resync", AUTH, b"", 202),
        ("GET", "/healthz", {}, None, 200),
    ],
    ids=["head", "get", "no-token", "wrong-token", "over-limit", "encoded-slash", "resync", "healthz"],
)
def test_every_other_request_is_flasks(
    app: Flask, method: str, target: str, headers: dict[str, str], body: bytes | None, status: int
) -> None:
    answer = directroute.answered_by_flask(app, DirectEvents, method, target, headers, body)
    assert answer.status_code == status, answer.data


def test_a_length_of_more_digits_than_int_takes_is_flasks(app: Flask) -> None:
    # gunicorn refuses such a head itself; another WSGI server may pass it on.
    calls = FlaskCalls(app, DirectEvents)
    answer = app.test_client().post(
        "/minio/events",
        input_stream=io.BytesIO(b"{}"),
        headers=AUTH,
        environ_overrides={"CONTENT_LENGTH": "9" * 5000},
    )
    assert answer.status_code == 400 and "error" in answer.json, answer.data
    assert calls.paths == ["/minio/events"]


def test_a_chunked_post_is_flasks_and_accepted(app: Flask, bucket: Bucket, volume: Volume) -> None:
    calls = FlaskCalls(app, DirectEvents)
    body = json.dumps(minio_event(bucket.name, "m/1/a.bin")).encode()
    answer = post_chunked(app, body)
    assert answer.status_code == 200, answer.data
    assert calls.paths == ["/minio/events"]
    assert len(intents_on_disk(volume.intents)) == 1


def test_an_unexpected_failure_is_the_same_json_500_both_ways(
    app: Flask, bucket: Bucket, volume: Volume, caplog: pytest.LogCaptureFixture
) -> None:
    def broken_check() -> None:
        raise RuntimeError("not a failure the intake expects")

    # A real group commit whose state-directory check fails in a way nothing anticipates.
    app.extensions["intake"].group = GroupCommit(volume.intents, broken_check)
    client = app.test_client()
    body = json.dumps(minio_event(bucket.name, "m/1/a.bin")).encode()
    caplog.set_level(logging.ERROR)
    direct = client.post("/minio/events", data=body, headers=AUTH)
    chunked = post_chunked(app, body)
    for answer in (direct, chunked):
        assert (answer.status_code, answer.json) == (500, {"error": "internal error"})
    assert caplog.text.count("unhandled RuntimeError while serving a request") == 2
    assert "not a failure the intake expects" not in (direct.text + chunked.text)


def test_render_sends_what_flask_jsonify_sends_byte_for_byte(app: Flask) -> None:
    # Keys out of order, a null, a list, characters outside ASCII: each a way to differ.
    document: dict[str, object] = {
        "intents": ["b", "a"],
        "error": "\u00e9 \u2028",
        "accepted": 1,
        "field": None,
    }
    with app.app_context():
        assert render(document) == app.json.response(document).get_data()


Counts = dict[tuple[str, tuple[tuple[str, str], ...]], float]
RECEIVED = ("modelsync_webhook_records_received_total", ())
ACCEPTED = ("modelsync_webhook_records_accepted_total", ())


def _rejected(reason: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return ("modelsync_webhook_requests_rejected_total", (("reason", reason),))


def _counters() -> Counts:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in REGISTRY.collect()
        if family.name.startswith("modelsync_webhook_") and family.type == "counter"
        for sample in family.samples
        if sample.name.endswith("_total")
    }


def _counted(post: Callable[[], Any]) -> tuple[int, Counts]:
    """The status of ``post()`` and the webhook counters it moved, by how much."""
    before = _counters()
    status: int = post().status_code
    moved = {key: value - before.get(key, 0.0) for key, value in _counters().items()}
    return status, {key: value for key, value in moved.items() if value}


def test_both_ways_count_and_log_each_outcome_alike(
    app: Flask, bucket: Bucket, volume: Volume, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    ignored = ("modelsync_webhook_records_ignored_total", (("reason", "other_bucket"),))
    cases: list[tuple[Any, int, Counts]] = [
        (minio_event(bucket.name, "m/1/a.bin", size=3), 200, {RECEIVED: 1, ACCEPTED: 1}),
        (minio_event("not-ours", "m/1/a.bin"), 200, {RECEIVED: 1, ignored: 1}),
        (b"{", 400, {_rejected("bad_json"): 1}),
        (minio_event(bucket.name, "m/../x"), 422, {RECEIVED: 1, _rejected("unsafe_key"): 1}),
    ]
    client = app.test_client()
    caplog.set_level(logging.WARNING)

    def both_ways(body: Any, status: int, counts: Counts) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        direct = _counted(lambda: client.post("/minio/events", data=data, headers=AUTH))
        assert direct == _counted(lambda: post_chunked(app, data)) == (status, counts), body

    for body, status, counts in cases:
        both_ways(body, status, counts)
    (volume.models / ".modelsync").rename(tmp_path / "moved-state")  # the intents cannot be written
    both_ways(cases[0][0], 503, {RECEIVED: 1, _rejected("intents_unavailable"): 1})
    assert caplog.text.count("rejected event with unsafe key: ") == 2
    assert caplog.text.count("cannot write intents: ") == 2


def _comparable(answer: requests.Response) -> tuple[int, dict[str, str], bytes]:
    """The answer as sent, byte for byte, but for the intent ids (they differ by design) and the
    date."""
    body = answer.content
    for intent_id in answer.json().get("intents", []):
        body = body.replace(intent_id.encode(), b"<id>")
    headers = {name.lower(): value for name, value in answer.headers.items() if name.lower() != "date"}
    return answer.status_code, headers, body


def _post_latencies(webhook_url: str) -> float:
    text = requests.get(f"{webhook_url}/metrics", timeout=5).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "modelsync_webhook_request_duration_seconds_count" and sample.labels == {
                "endpoint": "/minio/events",
                "method": "POST",
            }:
                return sample.value
    return 0.0


def test_under_gunicorn_both_ways_answer_alike(volume: Volume, bucket: Bucket, start_webhook) -> None:
    webhook = start_webhook()
    bodies = {
        "accepted": minio_event(bucket.name, "m/1/a.bin", etag="d41d8cd98f00b204e9800998ecf8427e", size=3),
        "removed": minio_event(bucket.name, "m/1/a.bin", event="s3:ObjectRemoved:Delete"),
        "other bucket": minio_event("not-ours", "m/1/a.bin"),
        "no records": {"Records": []},
        "unsafe key": minio_event(bucket.name, "m/../../etc/passwd"),
        "surrogate": json.dumps(minio_event(bucket.name, "m/1/LONE")).replace("LONE", "\\ud800").encode(),
        "not JSON": b"{",
    }
    expected = {"not JSON": 400, "no records": 400, "surrogate": 400, "unsafe key": 422}
    expected |= {name: 200 for name in bodies if name not in expected}
    posted = 0
    for name, body in bodies.items():
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        url, headers = f"{webhook.url}/minio/events", {**AUTH, "Content-Type": "application/json"}
        direct = requests.post(url, data=data, headers=headers, timeout=10)
        chunked = requests.post(url, data=iter([data]), headers=headers, timeout=10)
        assert chunked.request.headers.get("Transfer-Encoding") == "chunked"
        assert _comparable(direct) == _comparable(chunked), name
        assert direct.status_code == expected[name], (name, direct.text)
        posted += 2
    written = intents_on_disk(volume.intents).values()
    fields = sorted(
        json.dumps({k: v for k, v in intent.items() if k not in ("id", "created_at")}, sort_keys=True)
        for intent in written
    )
    assert len(fields) == 4 and fields[0::2] == fields[1::2], fields  # each accepted twice, alike
    assert _post_latencies(webhook.url) == posted


def test_a_body_that_ends_before_its_length_is_408_both_ways(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    # Past BUFFER_BYTES a thread reads the body (as also when the worker's buffer budget is
    # spent). Cut there, the body is complete JSON: taking it would acknowledge what the
    # client never finished sending. The absolute form is the Flask view's, with the same head.
    volume.settings["webhook"]["max_body_bytes"] = 3 * 1024 * 1024
    volume.write()
    webhook = start_webhook(MODELSYNC_WEBHOOK_BUFFER_BYTES="100000")
    sent = json.dumps(minio_event(bucket.name, "m/1/a.bin")).encode() + b" " * 200_000
    for target in ("/minio/events", "http://x/minio/events"):
        head = f"POST {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
        with connect(webhook.url) as sock:
            sock.sendall(f"{head}Content-Length: 2000000\r\n\r\n".encode() + sent)
            sock.shutdown(socket.SHUT_WR)  # the client stops sending, and still reads
            answer, _ = read_answer(sock)
        assert (answer.status, json.loads(answer.body)) == (408, {"error": BODY_CUT_SHORT}), target
    assert not intents_on_disk(volume.intents)
    assert _post_latencies(webhook.url) == 2
