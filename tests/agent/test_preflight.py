"""Pre-flight (issue 14): a version OpenVINO cannot read is never published.

Real parts: the agent and webhook processes, moto's S3 server, the OpenVINO runtime in the
pre-flight child. The models are built at test time with the OpenVINO Python API (IR) and
``onnx.helper`` (ONNX) in devstack/models.py; nothing is downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from agent.preflight import model_file
from agent.preflightchild import HANG_ENV
from devstack.models import scaler_ir, scaler_onnx
from tests.support.helpers import free_port, minio_event, served_models, wait_for
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def upload(webhook, bucket: Bucket, model: str, version: int, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        key = f"{model}/{version}/{path}"
        bucket.put(key, data)
        assert webhook.post_event(minio_event(bucket.name, key)).status_code == 200


def status(volume: Volume) -> dict:
    try:
        return json.loads(volume.status.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def refusal(volume: Volume, model: str, version: int) -> dict | None:
    return status(volume).get("refused", {}).get(f"{model}:{version}")


def failed_reasons(volume: Volume) -> list[str]:
    failed = volume.models / ".modelsync" / "failed"
    return (
        [json.loads(p.read_text()).get("error", "") for p in failed.glob("*.json")] if failed.is_dir() else []
    )


def preflight_on(volume: Volume, mode: str, **extra: float) -> None:
    volume.settings["sync"].update(preflight=mode, **extra)
    volume.write()


def published(volume: Volume, model: str, version: int) -> bool:
    return (volume.models / model / str(version)).is_dir() and model in served_models(volume.ovms_config)


def test_model_files_follow_ovms_search_order(tmp_path: Path) -> None:
    (tmp_path / "graph.pbtxt").write_text("node {}")
    assert model_file(tmp_path) is None  # a MediaPipe graph: published without a pre-flight
    (tmp_path / "model.onnx").write_bytes(b"x")
    assert model_file(tmp_path) == tmp_path / "model.onnx"
    (tmp_path / "model.xml").write_bytes(b"x")
    assert model_file(tmp_path) == tmp_path / "model.xml"  # IR first, as OVMS looks


@pytest.mark.parametrize("mode", ["read", "compile"])
def test_broken_versions_refused_previous_kept_then_fixed(
    mode: str, volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    metrics_port = free_port()
    preflight_on(volume, mode, metrics_port=metrics_port)
    agent = start_agent()
    webhook = start_webhook()
    good = scaler_ir(1.0)
    upload(webhook, bucket, "scaler", 1, good)
    upload(webhook, bucket, "onnx", 1, {"model.onnx": scaler_onnx(2.0)})
    wait_for(
        lambda: published(volume, "scaler", 1) and published(volume, "onnx", 1), what="valid IR and ONNX"
    )
    before = served_models(volume.ovms_config)

    broken = {
        ("scaler", 2): {"model.xml": good["model.xml"], "model.bin": good["model.bin"][:-3]},
        ("scaler", 3): {"model.xml": b"<catalogue><item/></catalogue>"},
        ("onnx", 2): {"model.onnx": b"this is not a protobuf model"},
    }
    for (model, version), files in broken.items():
        upload(webhook, bucket, model, version, files)
    for model, version in broken:
        found = wait_for(lambda m=model, v=version: refusal(volume, m, v), what=f"{model}:{version} refused")
        assert found["by"] == "preflight"
        assert "RuntimeError" in found["reason"], found  # OpenVINO's own error
        assert not (volume.models / model / str(version)).exists()
    assert "Incorrect weights in bin file" in refusal(volume, "scaler", 2)["reason"]
    assert "Unable to read the model" in refusal(volume, "scaler", 3)["reason"]
    assert served_models(volume.ovms_config) == before  # the previous versions stay served
    wait_for(lambda: len(failed_reasons(volume)) >= 4, what="the refused intents in failed/")
    assert all("refused by preflight" in r for r in failed_reasons(volume))
    ready = requests.get(f"{webhook.url}/readyz", timeout=5).json()
    assert set(ready["refused"]) == {"scaler:2", "scaler:3", "onnx:2"}, ready
    assert "REFUSED: scaler:2" in _status_table(volume)
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert 'modelsync_agent_refused_version{by="preflight",model="scaler",version="2"} 1.0' in metrics
    # openvino ran in the pre-flight's children only, never in the agent's own memory.
    assert "openvino" not in Path(f"/proc/{agent.popen.pid}/maps").read_text()

    # A new upload that changes the bytes is tried again, and published.
    upload(webhook, bucket, "scaler", 2, scaler_ir(2.0))
    wait_for(lambda: published(volume, "scaler", 2) and refusal(volume, "scaler", 2) is None, what="fixed")
    assert (volume.models / "scaler" / "2" / "model.bin").read_bytes() == scaler_ir(2.0)["model.bin"]
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert 'model="scaler",version="2"' not in metrics  # the refusal is over
    assert agent.alive()


def _status_table(volume: Volume) -> str:
    from agent.statusview import render

    return render(status(volume))


def test_same_bytes_not_checked_again_after_restart(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    preflight_on(volume, "read")
    agent = start_agent()
    webhook = start_webhook()
    upload(webhook, bucket, "scaler", 1, {"model.xml": b"<not-a-model/>"})
    wait_for(lambda: refusal(volume, "scaler", 1), what="refused")
    assert agent.stop() == 0
    again = start_agent()  # its first reconcile lists scaler:1 again: the same bytes
    wait_for(
        lambda: (s := status(volume)).get("pid") == again.popen.pid and s.get("last_reconcile"),
        what="the restarted agent's first reconcile",
    )
    assert refusal(volume, "scaler", 1) is not None
    assert "scaler:1 pre-flight" not in again.log  # remembered, not checked (nor published) again
    assert not (volume.models / "scaler" / "1").exists()


def test_preflight_time_limit_kills_the_child(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    preflight_on(volume, "read", preflight_timeout_seconds=2)
    agent = start_agent(**{HANG_ENV: "1"})  # the child hangs until the time limit ends it
    webhook = start_webhook()
    upload(webhook, bucket, "scaler", 1, scaler_ir(1.0))
    found = wait_for(lambda: refusal(volume, "scaler", 1), what="refused by the time limit")
    assert "did not finish within 2s (killed)" in found["reason"]
    assert agent.alive()
    assert not (volume.models / "scaler" / "1").exists()


def test_preflight_memory_limit_is_a_refusal(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    preflight_on(volume, "read", preflight_memory_mb=64)  # too little to even load openvino
    agent = start_agent()
    webhook = start_webhook()
    upload(webhook, bucket, "scaler", 1, scaler_ir(1.0))
    found = wait_for(lambda: refusal(volume, "scaler", 1), what="refused by the memory limit")
    assert "within the pre-flight's memory limit of 64 MiB" in found["reason"], found
    assert agent.alive()
    # Raising the limit (a restart with other pre-flight settings) checks the same bytes again.
    assert agent.stop() == 0
    preflight_on(volume, "read", preflight_memory_mb=4096)
    start_agent(wait_ready=False)
    wait_for(lambda: published(volume, "scaler", 1), 30, what="published under the higher limit")
    assert refusal(volume, "scaler", 1) is None
