"""The gateway in tests: its configuration section, the gateway under gunicorn, a request body,
a prediction call as a reporter receives it, and reading the file sink's records."""

from __future__ import annotations

import fcntl
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from gateway import gunicorn_command
from gateway.prediction import Call
from tests.support.processes import Process, launch_gunicorn
from tests.support.volume import Volume

ROW = {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}


def infer_body(**extra: Any) -> dict[str, Any]:
    return {"inputs": [ROW], **extra}


def gateway_settings(volume: Volume, model_url: str, **reporting: Any) -> dict[str, Any]:
    predictions = volume.root / "predictions"
    predictions.mkdir(exist_ok=True)
    sinks = reporting.pop("sinks", [{"type": "file", "path": str(predictions / "predictions.jsonl")}])
    return {
        "model_service": {"url": model_url, "timeout_seconds": 10, "connect_timeout_seconds": 1},
        "reporting": {
            "spill_dir": str(volume.root / "spill"),
            "flush_seconds": 0.05,
            "retry_seconds": 0.2,
            "sinks": sinks,
            **reporting,
        },
    }


@dataclass
class Gateway:
    proc: Process
    url: str

    def infer(self, model: str, body: Any, version: str | None = None, **headers: str) -> requests.Response:
        path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return requests.post(
            self.url + path, data=data, headers={"Content-Type": "application/json", **headers}, timeout=15
        )


def launch_gateway(volume: Volume, log_path: Path, **env: str) -> Gateway:
    return Gateway(*launch_gunicorn("gateway", gunicorn_command(), volume, log_path, **env))


def a_call(index: int) -> Call:
    now = time.time()
    response = {
        "model_name": "adder",
        "model_version": "1",
        "outputs": [{"name": "sum", "shape": [1], "datatype": "FP32", "data": [float(index)]}],
    }
    return Call(
        request_id=f"req-{index}",
        model="adder",
        version="1",
        provider="rest",
        requested_at=now,
        answered_at=now + 0.001,
        http_status=200,
        response=json.dumps(response).encode(),
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file and its rotated backups, read under the file sink's
    lock (as a reader that must not race a rotation would)."""
    if not path.parent.is_dir():
        return []
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        records: list[dict[str, Any]] = []
        for item in sorted(path.parent.glob(path.name + "*")):
            if item.suffix != ".lock":
                # A reporter outside the lock (none here) could leave half a line: whole lines only.
                records += [json.loads(line) for line in item.read_text().split("\n")[:-1] if line]
        return records
