"""Fixtures: a real S3 endpoint (moto's threaded server), real agent and gunicorn processes.

Each test gets its own bucket and its own models volume under pytest's tmp_path. What the
fixtures build on (and what bench/ reuses) is in tests/support/.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from minio import Minio

from tests.support.helpers import wait_for
from tests.support.processes import Process, Webhook, child_env, launch_webhook
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, Bucket, S3Server
from tests.support.volume import Volume, base_settings

# Fixtures that live beside their rigs: `serve` (recorded WSGI servers on loopback), `ovms` (a
# stand-in OVMS), `pki`, `tls_broker` and `sasl_broker` (secured Kafka in front of Tansu).
pytest_plugins = ["tests.support.wsgirig", "tests.support.ovms", "tests.support.kafkasecure"]

logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    server = S3Server()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    client = Minio(f"127.0.0.1:{s3_server.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    name = f"models-{secrets.token_hex(4)}"
    client.make_bucket(name)
    return Bucket(client, name)


@pytest.fixture
def volume(tmp_path: Path, s3_server: S3Server, bucket: Bucket) -> Volume:
    vol = Volume(tmp_path, tmp_path / "sync-config.yaml")
    vol.models.mkdir()
    vol.settings = base_settings(s3_server.endpoint, bucket.name, vol.models)
    vol.write()
    return vol


@pytest.fixture
def start_agent(volume: Volume) -> Iterator[Callable[..., Process]]:
    started: list[Process] = []

    def start(wait_ready: bool = True, **env: str) -> Process:
        log_path = volume.root / f"agent-{len(started)}.log"
        proc = Process([sys.executable, "-m", "agent", "run"], child_env(volume, **env), log_path)
        started.append(proc)
        if wait_ready:
            wait_for(lambda: volume.ovms_config.exists() or not proc.alive(), 20, what="agent start")
            assert proc.alive(), proc.log
        return proc

    yield start
    for proc in started:
        if proc.alive():
            code = proc.stop()
            assert code == 0, f"agent exited {code} on SIGTERM:\n{proc.log}"


@pytest.fixture
def start_webhook(volume: Volume) -> Iterator[Callable[..., Webhook]]:
    started: list[Webhook] = []

    def start(**env: str) -> Webhook:
        webhook = launch_webhook(volume, volume.root / f"webhook-{len(started)}.log", **env)
        started.append(webhook)
        return webhook

    yield start
    for webhook in started:
        if webhook.proc.alive():
            webhook.proc.stop()
