"""Fixtures of the gateway tests: a real KServe v2 model server (MLServer), a real
Kafka-compatible broker (Tansu), the gateway under gunicorn and its Kafka worker process."""

from __future__ import annotations

import fcntl
import json
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from devstack.broker import Broker
from devstack.modelserver import ModelServer
from gateway import gunicorn_command
from tests.conftest import Process, Volume, child_env, launch_gunicorn
from tests.helpers import free_port, wait_for

ROW = {"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}


def infer_body(**extra: Any) -> dict[str, Any]:
    return {"inputs": [ROW], **extra}


@pytest.fixture(scope="session")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModelServer]:
    server = ModelServer(tmp_path_factory.mktemp("mlserver") / "mlserver.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    server = Broker(tmp_path_factory.mktemp("tansu") / "tansu.log", free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def topics(broker: Broker) -> dict[str, str]:
    """Fresh request, reply, dead-letter and predictions topics for one test."""
    tag = uuid.uuid4().hex[:8]
    names = {k: f"{k}-{tag}" for k in ("requests", "replies", "dead", "predictions")}
    broker.create_topics(*names.values())
    return names


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


@pytest.fixture
def gateway_volume(volume: Volume, model_server: ModelServer) -> Volume:
    """The test's configuration file, with a gateway section pointing at the model server."""
    volume.settings["gateway"] = gateway_settings(volume, model_server.url)
    volume.write()
    return volume


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


@pytest.fixture
def start_gateway(gateway_volume: Volume) -> Iterator[Callable[..., Gateway]]:
    started: list[Gateway] = []

    def start(**env: str) -> Gateway:
        gateway = launch_gateway(gateway_volume, gateway_volume.root / f"gateway-{len(started)}.log", **env)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        if gateway.proc.alive():
            code = gateway.proc.stop(timeout=40)
            assert code == 0, f"gateway exited {code} on SIGTERM:\n{gateway.proc.log}"


@pytest.fixture
def start_kafka_worker(gateway_volume: Volume) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(**env: str) -> Process:
        log_path = gateway_volume.root / f"kafka-worker-{len(started)}.log"
        proc = Process([sys.executable, "-m", "gateway", "kafka"], child_env(gateway_volume, **env), log_path)
        started.append(proc)
        wait_for(lambda: "assigned" in proc.log or not proc.alive(), 30, what="kafka worker assignment")
        assert proc.alive(), proc.log
        return proc

    yield start
    for proc in started:
        if proc.alive():
            code = proc.stop(timeout=40)
            assert code == 0, f"kafka worker exited {code} on SIGTERM:\n{proc.log}"


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
