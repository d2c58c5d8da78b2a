"""No intent file stops the agent, and a loop step that keeps failing is visible.

Real agent and gunicorn processes, moto's S3 server, a real file system. The poisoned intent
is a file that passes ``intent.schema.json`` but names a key with a lone UTF-16 surrogate
(JSON ``"\\ud800"``): no bucket can hold that key, and every encode of it raises.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from modelsync import atomic
from tests.support.helpers import free_port, http_ok, md5, served_models, wait_for
from tests.support.intents import failed_records, hostile_intent
from tests.support.metrics import metric
from tests.support.processes import agent_cli
from tests.support.s3 import Bucket
from tests.support.volume import Volume

SURROGATE_PATH = "model-\ud800.bin"  # json.dumps writes it as the escape "\ud800"


def write_raw(volume: Volume, intent: dict[str, Any]) -> str:
    """Written whole (temp file, rename); json.dumps escapes the surrogate as "\\ud800"."""
    name = f"{intent['id']}.json"
    data = json.dumps(intent).encode()
    assert b"\\ud800" in data  # checked before writing: the agent may move the file at once
    atomic.write_bytes(volume.intents / name, data)
    return name


def legit_intent(volume: Volume, bucket: Bucket, model: str, data: bytes) -> None:
    key = f"{model}/1/model.bin"
    bucket.put(key, data)
    intent = hostile_intent(
        bucket.name, key=key, model=model, path="model.bin", etag=md5(data), size=len(data)
    )
    atomic.write_json(volume.intents / f"{intent['id']}.json", intent)


def test_an_intent_with_an_unencodable_key_moves_to_failed_and_the_agent_goes_on(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    volume.settings["sync"]["interval"] = 600  # only the intents can bring the legit model
    volume.write()
    agent = start_agent()
    webhook = start_webhook()
    wait_for(lambda: requests.get(f"{webhook.url}/readyz", timeout=5).ok, what="ready")
    poison = hostile_intent(bucket.name, key=f"m/1/{SURROGATE_PATH}", path=SURROGATE_PATH)
    name = write_raw(volume, poison)
    legit_intent(volume, bucket, "legit", b"legit bytes")  # queued behind the poisoned one

    wait_for(lambda: name in failed_records(volume), what="the poisoned intent in failed/")
    error = failed_records(volume)[name]["error"]
    assert "not encodable as UTF-8" in error, error
    wait_for(lambda: "legit" in served_models(volume.ovms_config), what="the intent behind it applied")
    assert (volume.models / "legit" / "1" / "model.bin").read_bytes() == b"legit bytes"
    assert not list(volume.models.glob("m/*")), "nothing written for the poisoned key"
    assert requests.get(f"{webhook.url}/readyz", timeout=5).status_code == 200
    assert agent.alive()
    assert "sync step" not in agent.log, "the loop never failed"


def loop_failures(url: str, step: str) -> float | None:
    return metric(url, "modelsync_agent_loop_failures_consecutive", {"step": step})


def test_a_step_that_keeps_failing_shows_in_readyz_health_and_metrics_then_clears(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    port = free_port()
    volume.settings["sync"].update(interval=600, metrics_port=port)
    volume.write()
    agent = start_agent()
    webhook = start_webhook()
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: http_ok(url), what="metrics endpoint")
    assert loop_failures(url, "move_failed") == 0.0
    # failed/ is a file: a bad intent cannot be moved there, the step that moves them fails
    # every time.
    failed_dir = volume.models / ".modelsync" / "failed"
    failed_dir.rmdir()
    failed_dir.write_text("in the way")
    bad = write_raw(volume, hostile_intent(bucket.name, key=f"m/1/{SURROGATE_PATH}", path=SURROGATE_PATH))
    legit_intent(volume, bucket, "legit", b"legit bytes")

    # The rest is not stopped: the intent queued behind the bad one is applied meanwhile.
    wait_for(lambda: "legit" in served_models(volume.ovms_config), what="the other intent applied")

    def not_ready() -> list[str]:
        answer = requests.get(f"{webhook.url}/readyz", timeout=5)
        return answer.json().get("reasons", []) if answer.status_code == 503 else []

    reasons = wait_for(not_ready, 30, what="/readyz 503")
    assert any("step move_failed failed" in r and "times in a row" in r for r in reasons), reasons
    assert any("File exists" in r for r in reasons), reasons
    assert (loop_failures(url, "move_failed") or 0) >= 3
    health = agent_cli(volume, "health")
    assert health.returncode == 1
    assert "agent loop step move_failed failed" in health.stderr, health.stderr
    table = agent_cli(volume, "status")
    assert "FAILING: agent loop step move_failed failed" in table.stdout, table.stdout
    status = json.loads(volume.status.read_text())
    failing = status["loop"]["failing_steps"]["move_failed"]
    assert failing["consecutive_failures"] >= 3
    assert "cannot move 1 intent(s)" in failing["error"]

    failed_dir.unlink()  # the operator clears the way: the bad intent moves, the step succeeds
    wait_for(lambda: bad in failed_records(volume), 30, what="the bad intent moved once it can be")
    wait_for(lambda: requests.get(f"{webhook.url}/readyz", timeout=5).ok, 30, what="ready again")
    assert loop_failures(url, "move_failed") == 0.0
    assert agent_cli(volume, "health").returncode == 0
    assert json.loads(volume.status.read_text())["loop"]["failing_steps"] == {}
    assert agent.alive()
