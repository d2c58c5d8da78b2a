"""``make run`` keeps its promise: the sample model reaches config.json and the model server,
the printed curl lines publish version 2, the gateway's answer is version 2's own (input * 2,
computed by the OpenVINO runtime from the files the agent published), and its records are in
the predictions bucket."""

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


def run_json(command: str) -> dict:
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30)
    try:
        answer = json.loads(result.stdout)
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def answered_by(command: str, version: str) -> dict | None:
    answer = run_json(command)
    return answer if answer.get("model_version") == version else None


def bucket_record(command: str, version: str) -> dict | None:
    """The printed devstack.records command: the request's records in the predictions bucket."""
    result = subprocess.run(shlex.split(command), capture_output=True, text=True, timeout=30, cwd=ROOT)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    return next((r for r in records if r["modelVersion"] == version), None)


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
        "DEVSTACK_GRPC_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    log = tmp_path / "devstack.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devstack"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        config_json = tmp_path / "var" / "models" / "config.json"
        wait_for(lambda: "scaler" in served_models(config_json), 60, what="sample model served")
        wait_for(lambda: "Ctrl-C" in log.read_text(), 10, what="usage printed")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{webhook_port}/healthz"), 30, what="webhook")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{gateway_port}/healthz"), 30, what="gateway")
        lines = [line.strip() for line in log.read_text().splitlines() if line.strip().startswith("curl")]
        infer = next(line for line in lines if "/v2/models/scaler/infer" in line)
        version_1 = wait_for(lambda: answered_by(infer, "1"), 30, interval=0.2, what="scaler:1 served")
        assert version_1["outputs"][0]["data"] == [1.0, 2.0, 3.0, 4.0], version_1

        # Run the printed curl lines for version 2, as a reader would.
        publish = [line for line in lines if "scaler/2" in line or "/minio/events" in line]
        assert len(publish) == 4, lines
        for line in publish:
            result = subprocess.run(shlex.split(line), capture_output=True, text=True, timeout=30)
            assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["accepted"] == 3
        # Served within a second or so of the event (a few seconds of slack for a busy machine).
        answer = wait_for(lambda: answered_by(infer, "2"), 10, interval=0.2, what="scaler:2 served")
        assert answer["outputs"][0]["data"] == [2.0, 4.0, 6.0, 8.0], answer  # only version 2 doubles
        records = next(line.strip() for line in log.read_text().splitlines() if "devstack.records" in line)
        record = wait_for(lambda: bucket_record(records, "2"), 20, interval=0.5, what="record")
        assert record["modelName"] == "scaler" and record["value"]["data"] == [2.0, 4.0, 6.0, 8.0], record

        resync = next(line for line in lines if "resync" in line)
        outcome = subprocess.run(shlex.split(resync), capture_output=True, text=True, timeout=30)
        assert json.loads(outcome.stdout)["status"] == "applied"
        assert re.search(r"scaler", config_json.read_text())

        # The gateway's printed lines: REST through the gateway, then Kafka through its worker.
        infer = next(line for line in lines if "adder/versions/1/infer" in line)
        answer = subprocess.run(shlex.split(infer), capture_output=True, text=True, timeout=30)
        assert json.loads(answer.stdout)["outputs"][0]["data"] == [6.0, 15.0], answer.stdout
        kafka = next(line.strip() for line in log.read_text().splitlines() if "kafka_request" in line)
        answer = subprocess.run(shlex.split(kafka), capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert answer.returncode == 0, answer.stderr
        reply = json.loads(answer.stdout)
        assert reply["headers"]["status"] == "200" and reply["body"]["model_version"] == "2"
        # The gRPC provider's printed line (tritonclient, as against OVMS's gRPC port).
        grpc_call = next(line.strip() for line in log.read_text().splitlines() if "tritonclient.grpc" in line)
        answer = wait_for(
            lambda: (
                (
                    r := subprocess.run(
                        shlex.split(grpc_call), capture_output=True, text=True, timeout=60, cwd=ROOT
                    )
                ).returncode
                == 0
                and r
            ),
            30,
            what="the gRPC provider's answer",
        )
        assert answer.stdout.strip() == "[ 6. 15.]", answer.stdout
        predictions = tmp_path / "var" / "predictions" / "predictions.jsonl"
        wait_for(
            lambda: predictions.exists() and len(predictions.read_text().splitlines()) >= 5,
            10,
            what="records",
        )
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()
