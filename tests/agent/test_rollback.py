"""Rollback after OVMS refuses a version (issue 14, test 4), against a stand-in OVMS.

The stand-in (tests/test_ovms_integration.FakeOvms) answers OVMS's reload and ``GET
/v1/config`` routes; a test marks a version LOADING_FAILED the way OVMS reports a model it
could not load. The agent is the real process, the bucket moto's S3 server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelsync.intents import IntentWriter
from tests.support.helpers import served_models, wait_for
from tests.support.intents import intent_files
from tests.support.ovms import FakeOvms
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def status(volume: Volume) -> dict[str, Any]:
    try:
        return json.loads(volume.status.read_text())
    except (FileNotFoundError, ValueError):
        return {}


def resync(volume: Volume, model: str, version: int) -> None:
    writer = IntentWriter(volume.intents)
    writer.write_all([writer.new("resync", model=model, version=version)])


def ovms_state(volume: Volume, model: str, version: int) -> str | None:
    versions = status(volume).get("models", {}).get(model, {}).get("versions", {})
    return versions.get(str(version), {}).get("ovms_state")


@pytest.fixture
def agent_with_v1(volume: Volume, bucket: Bucket, ovms: FakeOvms, start_agent):
    volume.settings["ovms"]["rest_url"] = ovms.url
    volume.write()
    ovms.models["scaler"] = [1]
    bucket.put("scaler/1/model.onnx", b"v1 bytes")
    agent = start_agent()
    wait_for(lambda: ovms_state(volume, "scaler", 1) == "AVAILABLE", what="scaler:1 AVAILABLE")
    return agent


def test_new_version_ovms_cannot_load_is_rolled_back(
    volume: Volume, bucket: Bucket, ovms: FakeOvms, agent_with_v1
) -> None:
    before = served_models(volume.ovms_config)
    ovms.models["scaler"] = [1, 2]
    ovms.failing[("scaler", 2)] = "Error while loading a model: broken weights"
    bucket.put("scaler/2/model.onnx", b"v2 bytes OVMS cannot load")
    resync(volume, "scaler", 2)
    found = wait_for(
        lambda: status(volume).get("refused", {}).get("scaler:2"), what="scaler:2 refused by OVMS"
    )
    assert found["by"] == "ovms" and "broken weights" in found["reason"], found
    assert not (volume.models / "scaler" / "2").exists()  # back to version 1 alone
    assert (volume.models / "scaler" / "1" / "model.onnx").read_bytes() == b"v1 bytes"
    assert served_models(volume.ovms_config) == before
    ovms.models["scaler"] = [1]
    assert "REFUSED by ovms" in agent_with_v1.log

    # The same bytes are not published again, by a resync or the reconcile.
    resync(volume, "scaler", 2)
    wait_for(lambda: not intent_files(volume.intents), what="the resync handled")
    assert not (volume.models / "scaler" / "2").exists()
    assert agent_with_v1.log.count("scaler:2 staged") == 1

    # New bytes are tried again.
    ovms.failing.clear()
    ovms.models["scaler"] = [1, 2]
    bucket.put("scaler/2/model.onnx", b"v2 fixed")
    resync(volume, "scaler", 2)
    wait_for(lambda: ovms_state(volume, "scaler", 2) == "AVAILABLE", what="the fixed scaler:2 served")
    assert (volume.models / "scaler" / "2" / "model.onnx").read_bytes() == b"v2 fixed"
    assert "scaler:2" not in status(volume).get("refused", {})


def test_version_replaced_in_place_gets_its_old_content_back(
    volume: Volume, bucket: Bucket, ovms: FakeOvms, agent_with_v1
) -> None:
    reloads = ovms.reloads
    ovms.failing[("scaler", 1)] = "Error while loading a model: not an ONNX graph"
    bucket.put("scaler/1/model.onnx", b"v1 replaced by junk")
    resync(volume, "scaler", 1)
    found = wait_for(
        lambda: status(volume).get("refused", {}).get("scaler:1"), what="scaler:1 refused by OVMS"
    )
    assert "previous content is back" in found["reason"], found
    assert (volume.models / "scaler" / "1" / "model.onnx").read_bytes() == b"v1 bytes"
    # One reload for the replacement, one more for the rollback: OVMS loads the old directory.
    wait_for(lambda: ovms.reloads >= reloads + 2, what="the reload after the rollback")
    hidden = [p.name for p in (volume.models / "scaler").iterdir() if p.name.startswith(".")]
    assert hidden == [], hidden  # nothing left behind
