"""The whole path against real processes: bucket -> webhook -> intent -> agent -> disk + config.json."""

from __future__ import annotations

import json

import requests

from tests.support.helpers import minio_event, served_models, wait_for
from tests.support.intents import intent_files
from tests.support.s3 import Bucket
from tests.support.volume import TOKEN, Volume


def upload_version(bucket: Bucket, model: str, version: int, files: dict[str, bytes]) -> dict[str, str]:
    return {path: bucket.put(f"{model}/{version}/{path}", data) for path, data in files.items()}


def notify(webhook, bucket: Bucket, keys: list[str], event: str = "s3:ObjectCreated:Put") -> None:
    for key in keys:
        response = webhook.post_event(minio_event(bucket.name, key, event=event))
        assert response.status_code == 200, response.text


def test_new_model_reaches_config_json(volume: Volume, bucket: Bucket, start_agent, start_webhook) -> None:
    agent = start_agent()
    webhook = start_webhook()
    ready = wait_for(
        lambda: requests.get(f"{webhook.url}/readyz", timeout=5).status_code == 200, what="ready"
    )
    assert ready
    files = {"model.xml": b"<xml/>", "model.bin": b"\x00" * 4096}
    upload_version(bucket, "resnet", 1, files)
    notify(webhook, bucket, [f"resnet/1/{p}" for p in files])

    wait_for(lambda: "resnet" in served_models(volume.ovms_config), what="resnet in config.json")
    entry = served_models(volume.ovms_config)["resnet"]
    assert entry["base_path"] == str(volume.models / "resnet")
    for path, data in files.items():
        assert (volume.models / "resnet" / "1" / path).read_bytes() == data
    # Intents go only after config.json moved on (at-least-once), and the webhook's log
    # segment only once its process has ended too: stop it and wait for both.
    webhook.proc.stop()
    wait_for(lambda: not intent_files(volume.intents), what="intents removed once applied")
    assert "Successfully synced model resnet:1" in agent.log


def agent_status(volume: Volume) -> dict:
    try:
        return json.loads(volume.status.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_second_version_then_update_then_delete(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    start_agent()
    webhook = start_webhook()
    upload_version(bucket, "bert", 1, {"model.onnx": b"v1"})
    notify(webhook, bucket, ["bert/1/model.onnx"])
    wait_for(lambda: (volume.models / "bert" / "1" / "model.onnx").exists(), what="bert:1")

    upload_version(bucket, "bert", 2, {"model.onnx": b"v2", "extra/vocab.txt": b"a b c"})
    notify(webhook, bucket, ["bert/2/model.onnx", "bert/2/extra/vocab.txt"])
    v2 = volume.models / "bert" / "2"
    wait_for(lambda: (v2 / "extra" / "vocab.txt").exists(), what="bert:2 with a nested file")
    assert (volume.models / "bert" / "1" / "model.onnx").read_bytes() == b"v1"

    # An updated version is swapped in as a new directory (OVMS ignores in-place edits).
    inode_before = v2.stat().st_ino
    bucket.put("bert/2/model.onnx", b"v2-fixed")
    notify(webhook, bucket, ["bert/2/model.onnx"])
    wait_for(lambda: (v2 / "model.onnx").read_bytes() == b"v2-fixed", what="bert:2 updated")
    assert v2.stat().st_ino != inode_before
    assert (v2 / "extra" / "vocab.txt").read_bytes() == b"a b c"

    # Deleting every object of a version removes it; the last version takes the model out.
    bucket.delete("bert/1/model.onnx")
    notify(webhook, bucket, ["bert/1/model.onnx"], event="s3:ObjectRemoved:Delete")
    wait_for(lambda: not (volume.models / "bert" / "1").exists(), what="bert:1 removed")
    assert "bert" in served_models(volume.ovms_config)
    for key in ("bert/2/model.onnx", "bert/2/extra/vocab.txt"):
        bucket.delete(key)
    notify(webhook, bucket, ["bert/2/model.onnx", "bert/2/extra/vocab.txt"], event="s3:ObjectRemoved:Delete")
    wait_for(lambda: "bert" not in served_models(volume.ovms_config), what="bert out of config.json")
    # The directory goes only after config.json stopped pointing at it.
    wait_for(lambda: not (volume.models / "bert").exists(), what="bert's directory removed")
    assert not [
        p for p in volume.models.iterdir() if p.name.startswith(".staging") or p.name.startswith("bert")
    ]


def test_resync_with_wait_reports_the_outcome(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    start_agent()
    webhook = start_webhook()
    # No event at all: MinIO lost it. A resync must find the version anyway (the next
    # periodic reconcile is 30 s away).
    wait_for(lambda: agent_status(volume).get("last_reconcile"), what="first reconcile")
    upload_version(bucket, "yolo", 3, {"model.xml": b"<x/>", "model.bin": b"weights"})
    response = requests.post(
        f"{webhook.url}/v1/resync?wait=20",
        json={"model": "yolo"},
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    outcome = response.json()
    assert outcome["status"] == "applied"
    assert outcome["versions"] == {"yolo:3": "published"}
    assert "yolo" in served_models(volume.ovms_config)

    queued = requests.post(
        f"{webhook.url}/v1/resync", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert queued.status_code == 202
    assert queued.json()["status"] == "queued"


def test_restart_downloads_nothing(volume: Volume, bucket: Bucket, start_agent) -> None:
    files = {f"part-{i}.bin": bytes([i]) * 1000 for i in range(5)}
    upload_version(bucket, "gpt", 1, files)
    agent = start_agent()
    wait_for(lambda: "gpt" in served_models(volume.ovms_config), what="gpt via the start-up reconcile")
    wait_for(
        lambda: agent_status(volume).get("counters", {}).get("downloaded_files") == 5, what="5 downloads"
    )
    assert agent.stop() == 0

    config_before = volume.ovms_config.read_bytes()
    mtime_before = volume.ovms_config.stat().st_mtime_ns
    second = start_agent()
    wait_for(
        lambda: (
            agent_status(volume).get("pid") == second.popen.pid and agent_status(volume).get("last_reconcile")
        ),
        what="second agent's reconcile",
    )
    status = agent_status(volume)
    assert status["counters"]["downloaded_files"] == 0
    assert volume.ovms_config.read_bytes() == config_before
    assert volume.ovms_config.stat().st_mtime_ns == mtime_before, "an unchanged config is not rewritten"


def test_unmanaged_entries_survive(volume: Volume, bucket: Bucket, start_agent) -> None:
    hand_written = {
        "model_config_list": [
            {"config": {"name": "handmade", "base_path": "/opt/models/handmade", "target_device": "CPU"}}
        ],
        "pipeline_config_list": [{"name": "pipe", "inputs": ["x"], "nodes": [], "outputs": []}],
        "monitoring": {"metrics": {"enable": True}},
    }
    volume.ovms_config.write_text(json.dumps(hand_written))
    upload_version(bucket, "synced", 1, {"model.onnx": b"x"})
    start_agent()
    wait_for(lambda: "synced" in served_models(volume.ovms_config), what="synced in config.json")
    document = json.loads(volume.ovms_config.read_text())
    assert document["model_config_list"][0] == hand_written["model_config_list"][0]
    assert document["pipeline_config_list"] == hand_written["pipeline_config_list"]
    assert document["monitoring"] == hand_written["monitoring"]


def test_single_model_bucket_and_per_model_settings(volume: Volume, bucket: Bucket, start_agent) -> None:
    volume.settings["ovms"].update(
        model_name="face-detect",
        model_defaults={"target_device": "CPU"},
        models={"face-detect": {"model_version_policy": {"all": {}}, "nireq": 4}},
    )
    volume.write()
    bucket.put("1/model.xml", b"<v1/>")
    bucket.put("2/model.xml", b"<v2/>")
    start_agent()
    wait_for(lambda: (volume.models / "face-detect" / "2" / "model.xml").exists(), what="root layout synced")
    entry = wait_for(lambda: served_models(volume.ovms_config).get("face-detect"), what="entry")
    assert entry == {
        "name": "face-detect",
        "base_path": str(volume.models / "face-detect"),
        "target_device": "CPU",
        "model_version_policy": {"all": {}},
        "nireq": 4,
    }
    assert (volume.models / "face-detect" / "1" / "model.xml").read_bytes() == b"<v1/>"


def test_readyz_follows_the_agent_heartbeat(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    volume.settings["webhook"]["agent_stale_seconds"] = 1.5
    volume.write()
    agent = start_agent()
    webhook = start_webhook()
    wait_for(lambda: requests.get(f"{webhook.url}/readyz", timeout=5).status_code == 200, what="ready")
    assert agent.stop() == 0
    body = wait_for(
        lambda: (r := requests.get(f"{webhook.url}/readyz", timeout=5)).status_code == 503 and r.json(),
        what="not ready once the heartbeat is stale",
    )
    assert "agent heartbeat is" in body["reasons"][0]
