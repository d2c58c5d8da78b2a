"""The whole path against real processes: bucket -> webhook -> intent -> agent -> disk + config.json."""

from __future__ import annotations

import json

import requests

from tests.conftest import TOKEN, Bucket, Volume
from tests.helpers import minio_event, served_models, wait_for


def upload_version(bucket: Bucket, model: str, version: int, files: dict[str, bytes]) -> dict[str, str]:
    return {path: bucket.put(f"{model}/{version}/{path}", data) for path, data in files.items()}


def notify(webhook, bucket: Bucket, keys: list[str], event: str = "s3:ObjectCreated:Put") -> None:
    for key in keys:
        response = webhook.post_event(minio_event(bucket.name, key, event=event))
        assert response.status_code == 200, response.text


def test_new_model_reaches_config_json(volume: Volume, bucket: Bucket, start_agent, start_webhook) -> None:
    agent = start_agent()
    webhook = start_webhook()
    files = {"model.xml": b"<xml/>", "model.bin": b"\x00" * 4096}
    upload_version(bucket, "resnet", 1, files)
    notify(webhook, bucket, [f"resnet/1/{p}" for p in files])

    wait_for(lambda: "resnet" in served_models(volume.ovms_config), what="resnet in config.json")
    entry = served_models(volume.ovms_config)["resnet"]
    assert entry["base_path"] == str(volume.models / "resnet")
    for path, data in files.items():
        assert (volume.models / "resnet" / "1" / path).read_bytes() == data
    assert not list(volume.intents.glob("*.json")), "intents are removed once applied"
    assert "Successfully synced model resnet:1" in agent.log
