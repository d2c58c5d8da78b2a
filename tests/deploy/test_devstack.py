"""``make run`` keeps its promise: the sample model reaches config.json, and the printed curl
lines publish version 2."""

from __future__ import annotations

import json
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT
from tests.support.helpers import free_port, http_ok, served_models, wait_for


def test_make_run_stack_serves_the_sample_and_the_curl_lines_work(tmp_path: Path) -> None:
    s3_port, webhook_port, gateway_port = free_port(), free_port(), free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "DEVSTACK_VAR": str(tmp_path / "var"),
        "DEVSTACK_S3_PORT": str(s3_port),
        "DEVSTACK_WEBHOOK_PORT": str(webhook_port),
        "DEVSTACK_GATEWAY_PORT": str(gateway_port),
        "DEVSTACK_MODEL_PORT": str(free_port()),
        "DEVSTACK_KAFKA_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "devstack.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        config_json = tmp_path / "var" / "models" / "config.json"
        wait_for(lambda: "identity" in served_models(config_json), 30, what="sample model served")
        wait_for(lambda: "Ctrl-C" in log.read_text(), 10, what="usage printed")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{webhook_port}/healthz"), 30, what="webhook")
        # Run the printed curl lines for version 2, as a reader would.
        lines = [line.strip() for line in log.read_text().splitlines() if line.strip().startswith("curl")]
        publish = [line for line in lines if "identity/2" in line or "/minio/events" in line]
        assert len(publish) == 4, lines
        for line in publish:
            result = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["accepted"] == 3
        wait_for(
            lambda: (tmp_path / "var" / "models" / "identity" / "2" / "model.xml").exists(),
            20,
            what="identity:2",
        )
        resync = next(line for line in lines if "resync" in line)
        outcome = subprocess.run(shlex.split(resync), capture_output=True, text=True, timeout=30)
        assert json.loads(outcome.stdout)["status"] == "applied"
        assert re.search(r"identity", config_json.read_text())

        # The gateway's printed lines: REST through the gateway, then Kafka through its worker.
        wait_for(lambda: http_ok(f"http://127.0.0.1:{gateway_port}/healthz"), 30, what="gateway")
        infer = next(line for line in lines if "/infer" in line)
        answer = subprocess.run(shlex.split(infer), capture_output=True, text=True, timeout=30)
        assert json.loads(answer.stdout)["outputs"][0]["data"] == [6.0, 15.0], answer.stdout
        kafka = next(line.strip() for line in log.read_text().splitlines() if "kafka_request" in line)
        answer = subprocess.run(shlex.split(kafka), capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert answer.returncode == 0, answer.stderr
        reply = json.loads(answer.stdout)
        assert reply["headers"]["status"] == "200" and reply["body"]["model_version"] == "2"
        predictions = tmp_path / "var" / "predictions" / "predictions.jsonl"
        wait_for(
            lambda: predictions.exists() and len(predictions.read_text().splitlines()) >= 3,
            10,
            what="records",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()
