"""What must not stop or mislead the agent: odd config.json shapes, odd intents, an endpoint
that is not S3, a failed swap (retried until it goes through), crash leftovers."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agent import dirswap
from modelsync import atomic
from modelsync.intents import new_intent_id, now_iso
from tests.support.helpers import served_models, wait_for
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def status(volume: Volume) -> dict[str, Any]:
    try:
        return json.loads(volume.status.read_text())
    except (FileNotFoundError, ValueError):
        return {}


@pytest.mark.parametrize(
    "broken",
    [
        {"model_config_list": [{"config": "x"}]},
        {"model_config_list": 5},
        {"model_config_list": [{"config": {"name": ["a"]}}]},
    ],
    ids=["config-not-object", "list-not-list", "name-not-string"],
)
def test_odd_config_json_is_reported_then_healed_once_fixed(
    volume: Volume, bucket: Bucket, start_agent, broken: dict[str, Any]
) -> None:
    volume.ovms_config.write_text(json.dumps(broken))
    bucket.put("m/1/model.onnx", b"x")
    agent = start_agent(wait_ready=False)
    wait_for(lambda: (volume.models / "m" / "1").is_dir(), what="files synced all the same")
    wait_for(
        lambda: "leaving it untouched" in (status(volume).get("config", {}).get("error") or ""), what="error"
    )
    assert json.loads(volume.ovms_config.read_text()) == broken
    assert agent.alive()
    # The operator fixes the file: the owed swap goes through without a restart or an event.
    volume.ovms_config.write_text(json.dumps({"model_config_list": []}))
    wait_for(lambda: "m" in served_models(volume.ovms_config), what="the owed swap")
    assert agent.log.count("leaving it untouched") == 1, "a retried failure is logged once"


def write_intent(volume: Volume, intent: dict[str, Any]) -> None:
    atomic.write_json(volume.intents / f"{intent['id']}.json", intent)


def test_a_float_version_intent_is_refused_and_serves_on(volume: Volume, bucket: Bucket, start_agent) -> None:
    bucket.put("m/1/model.onnx", b"x")
    start_agent()
    wait_for(lambda: "m" in served_models(volume.ovms_config), what="m served")
    intent = {"intent_version": 1, "id": new_intent_id(), "kind": "resync", "created_at": now_iso()}
    write_intent(volume, {**intent, "model": "m", "version": 1.0})
    failed = volume.models / ".modelsync" / "failed" / f"{intent['id']}.json"
    wait_for(failed.exists, what="moved to failed/")
    assert "expected an integer" in json.loads(failed.read_text())["error"]
    assert "m" in served_models(volume.ovms_config)
    assert (volume.models / "m" / "1" / "model.onnx").exists()


class NotS3(BaseHTTPRequestHandler):
    """A web console answering 200 with HTML, where the S3 API was expected."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b"<!doctype html><html><body>MinIO Console</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


@pytest.fixture
def not_s3() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotS3)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_endpoint_that_is_not_s3_is_an_outage_not_a_crash(
    volume: Volume, not_s3: str, start_agent
) -> None:
    volume.settings["minio"]["endpoint"] = not_s3
    volume.write()
    agent = start_agent()
    wait_for(lambda: status(volume).get("storage", {}).get("reachable") is False, what="reported unreachable")
    assert "retrying in" in agent.log
    assert agent.alive()
    assert "Traceback" not in agent.log


def test_a_resync_that_cannot_publish_reports_failure(volume: Volume, bucket: Bucket, start_agent) -> None:
    # The manifest promises content the bucket does not hold: staging fails every time.
    bucket.put("bad/1/model.bin", b"actual bytes")
    wrong = hashlib.sha256(b"promised bytes").hexdigest()
    bucket.put(
        "bad/1/metadata.json", json.dumps({"files": {"model.bin": {"size": 12, "sha256": wrong}}}).encode()
    )
    start_agent()
    from tests.support.processes import agent_cli

    result = agent_cli(volume, "resync", "--model", "bad", "--wait", "20")
    assert result.returncode == 1
    outcome = json.loads(result.stdout)
    assert outcome["status"] == "failed"
    assert outcome["versions"] == {"bad:1": "retrying"}
    assert not (volume.models / "bad" / "1").exists()


def test_a_version_renamed_in_before_a_crash_is_adopted_or_removed_and_hand_placed_ones_kept(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    bucket.put("m/1/model.onnx", b"x")
    bucket.put("m/2/model.onnx", b"two")
    agent = start_agent()
    wait_for(lambda: (volume.models / "m" / "2").is_dir(), what="m synced")
    assert agent.stop() == 0
    # A crash right after renames the state never recorded: 7 (gone from the bucket) and 2
    # (still there). The in-flight record says both directories are the agent's own.
    state_path = volume.models / ".modelsync" / "state.json"
    state = json.loads(state_path.read_text())
    del state["models"]["m"]["2"]
    state_path.write_text(json.dumps(state))
    orphan = volume.models / "m" / "7"
    orphan.mkdir()
    (orphan / "model.onnx").write_bytes(b"not in the bucket")
    (volume.models / ".modelsync" / "inflight.json").write_text(json.dumps([["m", 7], ["m", 2]]))
    hand = volume.models / "m" / "9"  # an operator's own directory: never recorded
    hand.mkdir()
    (hand / "model.onnx").write_bytes(b"hand")
    second = start_agent()
    wait_for(lambda: not orphan.exists(), what="the crash's orphan removed")
    wait_for(lambda: json.loads(state_path.read_text())["models"]["m"].get("2"), what="2 adopted")
    assert (hand / "model.onnx").read_bytes() == b"hand"
    assert (volume.models / "m" / "2" / "model.onnx").read_bytes() == b"two"
    wait_for(
        lambda: json.loads((volume.models / ".modelsync" / "inflight.json").read_text()) == [], what="cleared"
    )
    assert "downloaded" in second.log


def test_a_manifest_that_breaks_the_parser_does_not_starve_other_versions(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    bucket.put("a/1/metadata.json", b"[" * 200_000)
    bucket.put("a/1/model.onnx", b"a")
    bucket.put("b/1/model.onnx", b"b")
    agent = start_agent()
    wait_for(lambda: "b" in served_models(volume.ovms_config), what="b served despite a")
    assert agent.alive()


def test_config_json_follows_the_disk_even_when_the_state_cannot_be_saved(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    state_path = volume.models / ".modelsync" / "state.json"
    state_path.mkdir(parents=True)  # every save fails with IsADirectoryError
    bucket.put("m/1/model.onnx", b"x")
    agent = start_agent(wait_ready=False)
    wait_for(lambda: (volume.models / "m" / "1").is_dir(), what="m on disk")
    wait_for(lambda: "m" in served_models(volume.ovms_config), what="config.json follows the disk")
    assert agent.alive()
    state_path.rmdir()
    wait_for(state_path.is_file, what="state saved once it can be")


def test_leftovers_are_removed_and_an_interrupted_replacement_is_restored(tmp_path: Path) -> None:
    model_dir = tmp_path / "m"
    (model_dir / ".staging-3-aaaa").mkdir(parents=True)
    (model_dir / ".trash-2-bbbb").mkdir()
    (model_dir / ".trash-2-bbbb" / "model.onnx").write_bytes(b"v2")  # its number is gone
    (model_dir / ".trash-4-cccc").mkdir()  # removed on purpose: the state dropped 4
    (model_dir / "5").mkdir()
    (model_dir / ".trash-5-dddd").mkdir()  # 5 is in place: this is the old copy
    removed = dirswap.remove_leftovers(model_dir, published=lambda v: v in (2, 5))
    assert sorted(p.name for p in removed) == [".staging-3-aaaa", ".trash-4-cccc", ".trash-5-dddd"]
    assert (model_dir / "2" / "model.onnx").read_bytes() == b"v2"
    assert sorted(p.name for p in model_dir.iterdir()) == ["2", "5"]


def test_unreadable_state_values_do_not_stop_the_agent(volume: Volume, bucket: Bucket, start_agent) -> None:
    state = volume.models / ".modelsync" / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"models": {"m": {"one": {"files": {}}}}}))
    bucket.put("m/1/model.onnx", b"x")
    agent = start_agent()
    wait_for(lambda: "m" in served_models(volume.ovms_config), what="m served")
    assert "ignoring unreadable state file" in agent.log
