"""Outages and a full disk: the agent backs off, reports, keeps its intents, and converges.

Real processes; the S3 endpoint is moto's server, stopped and restarted on the same port; the
full disk is a small tmpfs mounted over the models directory.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from modelsync.intents import IntentWriter
from tests.support.helpers import minio_event, served_models, wait_for
from tests.support.intents import intent_files, intents_on_disk, put_intent
from tests.support.processes import agent_cli
from tests.support.s3 import Bucket, S3Server
from tests.support.volume import Volume, read_status


def staging_dirs(models: Path) -> list[Path]:
    return [p for p in models.glob("*/.staging-*")]


def test_s3_stopped_mid_download_then_back_the_agent_recovers_by_itself(
    volume: Volume, bucket: Bucket, s3_server: S3Server, start_agent, start_webhook
) -> None:
    volume.settings["sync"].update(download_concurrency=1, interval=600, settle_seconds=0.1)
    volume.write()
    agent = start_agent()
    webhook = start_webhook()
    wait_for(lambda: read_status(volume).get("last_reconcile"), what="first reconcile")
    files = {f"shard-{i:02d}.bin": os.urandom(1024 * 1024) for i in range(40)}
    for path, data in files.items():
        bucket.put(f"big/1/{path}", data)
    try:
        for path in files:
            assert webhook.post_event(minio_event(bucket.name, f"big/1/{path}")).status_code == 200
        wait_for(lambda: staging_dirs(volume.models), what="the download to start")
        s3_server.stop()
        # The agent notices, backs off, reports; the staging directory goes; intents stay.
        wait_for(lambda: read_status(volume).get("storage", {}).get("reachable") is False, 30, what="outage")
        wait_for(lambda: not staging_dirs(volume.models), what="staging cleaned after the failure")
        assert len(intents_on_disk(volume.intents)) == len(files), "intents are kept during the outage"
        assert read_status(volume)["pending_intents"] == len(files), "and still owed"
        ready = requests.get(f"{webhook.url}/readyz", timeout=5)
        assert ready.status_code == 503
        assert "agent cannot reach the bucket" in ready.json()["reasons"]
        health = agent_cli(volume, "health")
        assert health.returncode == 1
        assert "Cannot connect to MinIO" in health.stderr
        assert not (volume.models / "big" / "1").exists()
    finally:
        if s3_server.server is None:
            s3_server.start()
    wait_for(lambda: (volume.models / "big" / "1").is_dir(), 60, what="big:1 after the outage")
    for path, data in files.items():
        assert (volume.models / "big" / "1" / path).read_bytes() == data
    wait_for(lambda: requests.get(f"{webhook.url}/readyz", timeout=5).status_code == 200, what="ready again")
    webhook.proc.stop()  # its log segment is finished: the agent deletes it once all is done
    wait_for(lambda: not intent_files(volume.intents), what="intents consumed")
    assert agent.alive(), "recovered without a restart"
    assert "retrying in" in agent.log
    assert "reachable again" in agent.log
    assert agent_cli(volume, "health").returncode == 0
    assert "big" in served_models(volume.ovms_config)


@pytest.fixture
def small_disk(volume: Volume) -> Iterator[Path]:
    """A 3 MiB tmpfs over the models directory (we run as root in the test environment)."""
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(volume.models)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs (the disk-full test needs root): {result.stderr}")
    try:
        yield volume.models
    finally:
        subprocess.run(["umount", "-l", str(volume.models)], check=False)


def test_a_version_that_does_not_fit_is_refused_before_download_and_the_previous_one_served(
    volume: Volume, bucket: Bucket, small_disk: Path, start_agent
) -> None:
    margin = 256 * 1024
    volume.settings["sync"].update(max_attempts=2, interval=600, settle_seconds=0.1, min_free_bytes=margin)
    volume.write()
    small = os.urandom(300 * 1024)
    bucket.put("m/1/model.bin", small)
    agent = start_agent()
    wait_for(lambda: "m" in served_models(volume.ovms_config), what="m:1 served")
    config_before = volume.ovms_config.read_bytes()
    writer = IntentWriter(volume.intents)
    big = 4 * 1024 * 1024

    # An update of the served version, and a new version, neither of which fits.
    bucket.put("m/1/model.bin", os.urandom(big))
    put_intent(writer, bucket.name, "m/1/model.bin")
    error = wait_for(
        lambda: (read_status(volume).get("last_error") or {}).get("message"), what="the error in status.json"
    )
    free = int(re.search(r"(\d+) bytes free", error).group(1))
    assert f"model m:1: not enough space on {volume.models}: {big} bytes to download, " in error
    assert 0 < free < big and f"(sync.min_free_bytes keeps {margin} free)" in error
    assert "not enough space" in agent.log
    wait_for(lambda: not staging_dirs(volume.models), what="staging cleaned up")
    assert (volume.models / "m" / "1" / "model.bin").read_bytes() == small
    assert volume.ovms_config.read_bytes() == config_before

    bucket.put("m/2/model.bin", os.urandom(big))
    put_intent(writer, bucket.name, "m/2/model.bin")
    wait_for(
        lambda: len(list((volume.models / ".modelsync" / "failed").glob("*.json"))) >= 2, 60, what="failed"
    )
    failed = [json.loads(p.read_text()) for p in (volume.models / ".modelsync" / "failed").glob("*.json")]
    assert all("not enough space" in f["error"] for f in failed), failed
    assert not staging_dirs(volume.models)
    assert not (volume.models / "m" / "2").exists()
    assert (volume.models / "m" / "1" / "model.bin").read_bytes() == small
    assert volume.ovms_config.read_bytes() == config_before
    assert agent.alive()
    assert "No space left on device" not in agent.log, "refused before the disk filled, not after"

    # Once space appears, the same version is tried again and served.
    subprocess.run(["mount", "-o", "remount,size=20m", str(volume.models)], check=True)
    put_intent(writer, bucket.name, "m/2/model.bin")
    wait_for(lambda: (volume.models / "m" / "2" / "model.bin").exists(), 30, what="m:2 once it fits")
    assert "Traceback" not in agent.log
