"""The webhook through Flask's test client (fast), and under real gunicorn where it matters."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from modelsync import schema
from tests.support import ROOT
from tests.support.helpers import minio_event, minio_record
from tests.support.intents import intents_on_disk
from tests.support.processes import child_env
from tests.support.s3 import Bucket
from tests.support.volume import TOKEN, Volume
from webhook import gunicorn_command
from webhook.app import create_app

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(volume: Volume) -> FlaskClient:
    app = create_app({"CONFIG_PATH": str(volume.config_path), "TESTING": True})
    return app.test_client()


def intents(volume: Volume) -> list[dict[str, Any]]:
    return list(intents_on_disk(volume.intents).values())


def everything_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_accepted_event_becomes_a_valid_intent(client: FlaskClient, volume: Volume, bucket: Bucket) -> None:
    body = minio_event(
        bucket.name, "my-model/3/sub dir/model+v2.onnx", etag="d41d8cd98f00b204e9800998ecf8427e", size=12
    )
    response = client.post("/minio/events", json=body, headers=AUTH)
    assert response.status_code == 200, response.json
    assert response.json["accepted"] == 1
    [intent] = intents(volume)
    schema.check(schema.INTENT, intent)
    assert intent["id"] == response.json["intents"][0]
    assert (intent["model"], intent["version"], intent["path"]) == ("my-model", 3, "sub dir/model+v2.onnx")
    assert intent["key"] == "my-model/3/sub dir/model+v2.onnx"  # '+' and space decoded as MinIO does
    assert intent["etag"] == "d41d8cd98f00b204e9800998ecf8427e"
    assert intent["size"] == 12
    assert intent["action"] == "put"
    assert not [p for p in volume.intents.iterdir() if p.name.startswith(".")], "no temp file left"


def test_removal_event(client: FlaskClient, volume: Volume, bucket: Bucket) -> None:
    body = minio_event(bucket.name, "m/1/x.bin", event="s3:ObjectRemoved:DeleteMarkerCreated")
    assert client.post("/minio/events", json=body, headers=AUTH).status_code == 200
    [intent] = intents(volume)
    assert intent["action"] == "delete"
    assert "etag" not in intent


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": TOKEN}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": f"Bearer {TOKEN}x"}, 401),
        (AUTH, 200),
    ],
)
def test_token(
    client: FlaskClient, volume: Volume, bucket: Bucket, headers: dict[str, str], status: int
) -> None:
    response = client.post("/minio/events", json=minio_event(bucket.name, "m/1/x"), headers=headers)
    assert response.status_code == status
    if status == 401:
        assert "token" in response.json["error"]
        assert TOKEN not in response.get_data(as_text=True)
        assert intents(volume) == []


def test_two_word_token_is_sent_as_is(volume: Volume, bucket: Bucket) -> None:
    volume.settings["webhook"]["auth_token"] = "Token abc123"
    volume.write()
    client = create_app({"CONFIG_PATH": str(volume.config_path)}).test_client()
    body = minio_event(bucket.name, "m/1/x")
    assert (
        client.post("/minio/events", json=body, headers={"Authorization": "Token abc123"}).status_code == 200
    )
    assert (
        client.post("/minio/events", json=body, headers={"Authorization": "Bearer Token abc123"}).status_code
        == 401
    )


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (b"{not json", None, "not valid JSON"),
        (b"\xff\xfe", None, "not UTF-8"),
        (b"[]", "", "expected object"),
        (b"{}", "Records", "required"),
        (b'{"Records": []}', "Records", "should be non-empty"),
        (b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}', "Records[0].s3", "required"),
        (
            b'{"Records": [{"eventName": "s3:X", "s3": {"bucket": {"name": "b"}, "object": {}}}]}',
            "Records[0].s3.object.key",
            "required",
        ),
        (
            b'{"Records": [{"eventName": 5, "s3": {"bucket": {"name": "b"}, "object": {"key": "k"}}}]}',
            "Records[0].eventName",
            "expected string",
        ),
        (b"[" * 100000 + b"]" * 100000, None, ""),
    ],
)
def test_bad_bodies_are_400_naming_the_field(
    client: FlaskClient, volume: Volume, data: bytes, field: str | None, words: str
) -> None:
    response = client.post("/minio/events", data=data, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status_code == 400, response.get_data(as_text=True)
    assert words in response.json["error"]
    if field is not None:
        assert response.json.get("field", "") == field
    assert intents(volume) == []


def test_body_over_the_limit_is_413(client: FlaskClient, volume: Volume, bucket: Bucket) -> None:
    body = minio_event(bucket.name, "m/1/x")
    body["padding"] = "x" * (1024 * 1024)
    response = client.post("/minio/events", json=body, headers=AUTH)
    assert response.status_code == 413
    assert "limit" in response.json["error"]
    assert intents(volume) == []


@pytest.mark.parametrize(
    "key",
    [
        "../etc/passwd",
        "m/1/../../x",
        "/abs/1/x",
        "m/1/x\x00y",
        "m\\1\\x",
        ".modelsync/intents/evil.json",
        "m/1/" + "/".join(["a" * 200] * 6),  # 1,210 bytes in short segments: longer than any S3 key
        "m/1/./x",
    ],
)
def test_unsafe_keys_are_422_and_nothing_is_written(
    client: FlaskClient, volume: Volume, bucket: Bucket, key: str
) -> None:
    before = everything_under(volume.root)
    good = minio_record(bucket.name, "m/1/fine.bin")
    bad = minio_record(bucket.name, key)
    response = client.post("/minio/events", json={"Records": [good, bad]}, headers=AUTH)
    assert response.status_code == 422
    assert response.json["field"] == "Records[1].s3.object.key"
    assert everything_under(volume.root) == before


def test_encoded_traversal_is_decoded_then_refused(
    client: FlaskClient, volume: Volume, bucket: Bucket
) -> None:
    record = minio_record(bucket.name, "x")
    record["s3"]["object"]["key"] = "m%2F1%2F%2e%2e%2F%2e%2e%2Fetc%2Fpasswd"
    response = client.post("/minio/events", json={"Records": [record]}, headers=AUTH)
    assert response.status_code == 422
    assert intents(volume) == []


@pytest.mark.parametrize(
    ("record_bucket", "key", "event", "reason"),
    [
        ("other-bucket", "m/1/x", "s3:ObjectCreated:Put", "other_bucket"),
        (None, "readme.md", "s3:ObjectCreated:Put", "layout"),
        (None, "m/latest/x", "s3:ObjectCreated:Put", "layout"),
        (None, "m/1/x", "s3:ObjectAccessed:Get", "event_type"),
    ],
)
def test_records_not_ours_are_acknowledged_and_counted(
    client: FlaskClient,
    volume: Volume,
    bucket: Bucket,
    record_bucket: str | None,
    key: str,
    event: str,
    reason: str,
) -> None:
    body = minio_event(record_bucket or bucket.name, key, event=event)
    before = ignored_count(client, reason)
    response = client.post("/minio/events", json=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json == {"accepted": 0, "ignored": 1, "intents": []}
    assert intents(volume) == []
    assert ignored_count(client, reason) == before + 1


def ignored_count(client: FlaskClient, reason: str) -> float:
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        for sample in family.samples:
            if sample.name == "modelsync_webhook_records_ignored_total" and sample.labels == {
                "reason": reason
            }:
                return sample.value
    return 0.0


def test_head_and_get_probe_answer_200(client: FlaskClient) -> None:
    assert client.head("/minio/events").status_code == 200
    assert client.get("/minio/events").status_code == 200


def test_unknown_route_and_method_are_json(client: FlaskClient) -> None:
    assert client.get("/nope").json["error"]
    response = client.delete("/minio/events", headers=AUTH)
    assert response.status_code == 405
    assert response.json["error"]


@pytest.mark.parametrize(
    ("body", "query", "words"),
    [
        ([1], "", "JSON object"),
        ({"model": "../x"}, "", "model"),
        ({"version": 1}, "", "needs a model"),
        ({"model": "m", "version": 0}, "", "positive integer"),
        ({"model": "m", "version": True}, "", "positive integer"),
        ({"model": "m", "extra": 1}, "", "unknown field"),
        ({"model": "m"}, "?wait=soon", "wait"),
        ({"model": "m"}, "?wait=-1", "wait"),
        ({"model": "m"}, "?wait=nan", "wait"),
    ],
)
def test_resync_bad_requests(client: FlaskClient, volume: Volume, body: Any, query: str, words: str) -> None:
    response = client.post(f"/v1/resync{query}", json=body, headers=AUTH)
    assert response.status_code == 400
    assert words in response.json["error"]
    assert intents(volume) == []


def test_resync_without_token_is_401(client: FlaskClient) -> None:
    assert client.post("/v1/resync").status_code == 401


def test_resync_writes_an_intent(client: FlaskClient, volume: Volume) -> None:
    response = client.post("/v1/resync", json={"model": "m", "version": 2}, headers=AUTH)
    assert response.status_code == 202
    [intent] = intents(volume)
    assert intent["kind"] == "resync"
    assert (intent["model"], intent["version"], intent["id"]) == ("m", 2, response.json["id"])


def test_readyz_reports_the_reasons(client: FlaskClient, volume: Volume) -> None:
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "agent has not reported yet" in response.json["reasons"][0]
    assert not [r for r in response.json["reasons"] if "segment" in r], "room for a segment here"
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_when_a_new_intent_log_segment_would_not_fit(volume: Volume) -> None:
    volume.models.mkdir(parents=True, exist_ok=True)
    mount = ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(volume.models)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (this test needs root): {mounted.stderr}")
    try:
        app = create_app({"CONFIG_PATH": str(volume.config_path), "TESTING": True})
        answer = app.test_client().get("/readyz")
        assert answer.status_code == 503
        assert any("a new intent log segment needs 4194304" in r for r in answer.json["reasons"]), answer.json
    finally:
        subprocess.run(["umount", "-l", str(volume.models)], check=False)


def run_gunicorn_expecting_exit(volume: Volume, **env: str) -> subprocess.CompletedProcess[str]:
    args = gunicorn_command()
    environment = child_env(volume, MODELSYNC_WEBHOOK_BIND="127.0.0.1:0", **env)
    return subprocess.run(args, env=environment, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_refuses_to_start_without_a_token(volume: Volume) -> None:
    del volume.settings["webhook"]["auth_token"]
    volume.write()
    result = run_gunicorn_expecting_exit(volume)
    assert result.returncode != 0
    assert "webhook.auth_token: is required" in result.stderr
    assert str(volume.config_path) in result.stderr
    assert "Traceback" not in result.stderr


def test_config_error_names_file_and_key(volume: Volume) -> None:
    volume.settings["sync"]["interval"] = "soon"
    volume.write()
    result = run_gunicorn_expecting_exit(volume)
    assert result.returncode != 0
    assert f"{volume.config_path}: sync.interval: expected number" in result.stderr


def test_insecure_no_auth_starts_with_a_warning(volume: Volume, bucket: Bucket, start_webhook) -> None:
    volume.settings["webhook"] = {"insecure_no_auth": True}
    volume.write()
    webhook = start_webhook()
    assert webhook.post_event(minio_event(bucket.name, "m/1/x"), token=None).status_code == 200
    assert "insecure_no_auth is true" in webhook.proc.log


def test_under_gunicorn_metrics_add_up_across_workers(volume: Volume, bucket: Bucket, start_webhook) -> None:
    webhook = start_webhook()
    for i in range(20):
        assert webhook.post_event(minio_event(bucket.name, f"m/1/f{i}")).status_code == 200
    assert webhook.post_event(minio_event(bucket.name, "m/1/x"), token="bad").status_code == 401
    assert requests.head(f"{webhook.url}/minio/events", timeout=5).status_code == 200
    text = requests.get(f"{webhook.url}/metrics", timeout=5).text
    assert "modelsync_webhook_records_accepted_total 20.0" in text
    assert 'modelsync_webhook_requests_rejected_total{reason="unauthorized"} 1.0' in text
    assert "modelsync_webhook_request_duration_seconds_bucket" in text
    assert len(intents(volume)) == 20


def test_resync_waits_are_capped_so_events_always_find_a_thread(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook(MODELSYNC_WEBHOOK_WORKERS="1", MODELSYNC_WEBHOOK_THREADS="4")
    import concurrent.futures
    import time

    # No agent runs: every wait lasts its full 8 s; uncapped, six of them would hold all
    # four threads and the event would queue behind them.
    def resync() -> int:
        url = f"{webhook.url}/v1/resync?wait=8"
        return requests.post(url, headers=AUTH, timeout=60).status_code

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        waits = [pool.submit(resync) for _ in range(6)]
        event = webhook.post_event(minio_event(bucket.name, "m/1/x"))
        answered_after = time.monotonic() - started
        assert event.status_code == 200
        assert answered_after < 4, "an event waited behind resync waits"
        codes = [f.result() for f in waits]
    assert codes.count(202) == 6
