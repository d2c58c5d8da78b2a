"""Fixtures of the gateway tests: a real KServe v2 model server (MLServer), a real
Kafka-compatible broker (Tansu), the gateway under gunicorn and its Kafka worker process."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator

import pytest

from devstack.broker import Broker
from devstack.modelserver import ModelServer
from tests.support.gateway import Gateway, gateway_settings, launch_gateway
from tests.support.helpers import free_port, wait_for
from tests.support.processes import Process, child_env
from tests.support.volume import Volume


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


@pytest.fixture
def gateway_volume(volume: Volume, model_server: ModelServer) -> Volume:
    """The test's configuration file, with a gateway section pointing at the model server."""
    volume.settings["gateway"] = gateway_settings(volume, model_server.url)
    volume.write()
    return volume


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
