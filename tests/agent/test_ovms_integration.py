"""What OVMS sees: forced reloads over its REST API, and a config.json the agent refuses to break.

OVMS itself does not install here; a small HTTP server answers its two config routes with the
shapes its documentation gives (201 reloaded / 200 unchanged; GET /v1/config model status).
"""

from __future__ import annotations

import json
from typing import Any

from tests.support.helpers import served_models, wait_for
from tests.support.ovms import FakeOvms
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def status(volume: Volume) -> dict[str, Any]:
    try:
        return json.loads(volume.status.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def test_reload_after_swap_and_available_recorded(
    volume: Volume, bucket: Bucket, ovms: FakeOvms, start_agent
) -> None:
    volume.settings["ovms"]["rest_url"] = ovms.url
    volume.write()
    ovms.models["det"] = [1]
    bucket.put("det/1/model.onnx", b"x")
    start_agent()
    wait_for(lambda: "det" in served_models(volume.ovms_config), what="det served")
    wait_for(lambda: ovms.reloads >= 2, what="reload after each swap (empty start, then det)")
    wait_for(
        lambda: (
            status(volume).get("models", {}).get("det", {}).get("versions", {}).get("1", {}).get("ovms_state")
            == "AVAILABLE"
        ),
        what="AVAILABLE recorded",
    )


def test_reload_down_still_swaps_and_reports(
    volume: Volume, bucket: Bucket, ovms: FakeOvms, start_agent
) -> None:
    volume.settings["ovms"]["rest_url"] = ovms.url
    volume.write()
    ovms.fail_reload = True
    bucket.put("seg/1/model.onnx", b"x")
    agent = start_agent()
    wait_for(lambda: "seg" in served_models(volume.ovms_config), what="swap happened anyway")
    wait_for(
        lambda: "OVMS reload answered 412" in ((status(volume).get("ovms") or {}).get("error") or ""),
        what="failure in status",
    )
    # OVMS answered: it read the file, the error is about a model. Not asked again and again.
    reloads = ovms.reloads
    beat = status(volume)["heartbeat"]
    wait_for(lambda: status(volume)["heartbeat"] > beat + 3, what="three seconds of heartbeats")
    assert ovms.reloads == reloads
    assert "OVMS reload answered 412" in agent.log


def test_broken_config_json_is_never_overwritten(volume: Volume, bucket: Bucket, start_agent) -> None:
    broken = b'{"model_config_list": [ {"config": {"name": "hand"'  # someone's half-saved edit
    volume.ovms_config.write_bytes(broken)
    bucket.put("new/1/model.onnx", b"x")
    agent = start_agent(wait_ready=False)
    wait_for(lambda: (volume.models / "new" / "1" / "model.onnx").exists(), what="files still synced")
    wait_for(lambda: status(volume).get("config", {}).get("valid") is False, what="config error in status")
    assert volume.ovms_config.read_bytes() == broken
    assert "is not valid JSON" in agent.log and "leaving it untouched" in agent.log


def test_result_failing_the_ovms_schema_is_not_written(volume: Volume, bucket: Bucket, start_agent) -> None:
    # A hand-written entry OVMS 2026 rejects: merging around it would still be rejected.
    hand = {"model_config_list": [{"config": {"name": "old", "base_path": "/x", "stateful": True}}]}
    volume.ovms_config.write_text(json.dumps(hand))
    before = volume.ovms_config.read_bytes()
    bucket.put("fresh/1/model.onnx", b"x")
    agent = start_agent(wait_ready=False)
    wait_for(lambda: (volume.models / "fresh" / "1").is_dir(), what="files synced")
    wait_for(lambda: "OVMS would reject it" in agent.log, what="refusal logged")
    assert volume.ovms_config.read_bytes() == before
    wait_for(
        lambda: "stateful" in (status(volume).get("config", {}).get("error") or ""), what="error in status"
    )


def test_reload_owed_while_ovms_is_down_is_sent_once_it_is_up(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    from tests.support.helpers import free_port

    port = free_port()
    volume.settings["ovms"]["rest_url"] = f"http://127.0.0.1:{port}"
    volume.write()
    bucket.put("late/1/model.onnx", b"x")
    agent = start_agent()
    wait_for(lambda: "late" in served_models(volume.ovms_config), what="swapped while OVMS is down")
    wait_for(lambda: "retrying the reload" in agent.log, what="reload owed")
    server = FakeOvms(port)  # OVMS comes up
    try:
        wait_for(lambda: server.reloads >= 1, 30, what="the owed reload")
        wait_for(lambda: "in step again" in agent.log, what="recovery logged")
        assert agent.log.count("retrying the reload") == 1, "the retries are not logged each time"
    finally:
        server.close()
