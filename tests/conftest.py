"""Fixtures: a real S3 endpoint (moto's threaded server), real agent and gunicorn processes.

Each test gets its own bucket and its own models volume under pytest's tmp_path.
"""

from __future__ import annotations

import io
import logging
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from minio import Minio
from moto.server import ThreadedMotoServer

from tests.helpers import free_port, http_ok, wait_for
from webhook import gunicorn_command

ROOT = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.wsgirig"]  # the `serve` fixture: recorded WSGI servers on loopback
ACCESS_KEY = "test-access-AKIA7SECRET"
SECRET_KEY = "test-secret-key-do-not-log-9f8e7d"
TOKEN = "test-webhook-token-5b4c3a"


class S3Server:
    """moto's threaded server, restartable on the same port (its data lives on in-process)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    server = S3Server()
    server.start()
    yield server
    server.stop()


@dataclass
class Bucket:
    client: Minio
    name: str

    def put(self, key: str, data: bytes) -> str:
        result = self.client.put_object(self.name, key, io.BytesIO(data), len(data))
        return str(result.etag).strip('"')

    def delete(self, key: str) -> None:
        self.client.remove_object(self.name, key)


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    client = Minio(f"127.0.0.1:{s3_server.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    name = f"models-{secrets.token_hex(4)}"
    client.make_bucket(name)
    return Bucket(client, name)


@dataclass
class Volume:
    root: Path
    config_path: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def ovms_config(self) -> Path:
        return self.models / "config.json"

    @property
    def intents(self) -> Path:
        return self.models / ".modelsync" / "intents"

    @property
    def status(self) -> Path:
        return self.models / ".modelsync" / "status.json"

    def write(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.settings))


def base_settings(endpoint: str, bucket: str, models: Path) -> dict[str, Any]:
    """The original sidecar's keys, plus fast timings for tests."""
    return {
        "minio": {
            "endpoint": endpoint,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "bucket_name": bucket,
            "secure": False,
        },
        "sync": {
            "interval": 30,
            "models_path": str(models),
            "log_level": "INFO",
            "settle_seconds": 0.3,
            "heartbeat_seconds": 0.5,
            # Tests upload placeholder bytes, not models; tests/test_preflight.py turns it on.
            "preflight": "off",
        },
        "ovms": {"config_path": str(models / "config.json")},
        "webhook": {"auth_token": TOKEN},
    }


@pytest.fixture
def volume(tmp_path: Path, s3_server: S3Server, bucket: Bucket) -> Volume:
    vol = Volume(tmp_path, tmp_path / "sync-config.yaml")
    vol.models.mkdir()
    vol.settings = base_settings(s3_server.endpoint, bucket.name, vol.models)
    vol.write()
    return vol


class Process:
    """A child process whose output goes to a file the test can read."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.handle = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.handle, stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        self.popen.kill()
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        finally:
            self.handle.close()


def child_env(volume: Volume, **extra: str) -> dict[str, str]:
    # AWS_*: the test process sets moto's credentials there; a child must see only what a test gives it.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MINIO_", "MODELSYNC_", "PROMETHEUS_", "AWS_"))
    }
    env.update(CONFIG_PATH=str(volume.config_path), PYTHONUNBUFFERED="1", **extra)
    return env


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


@dataclass
class Webhook:
    proc: Process
    url: str

    def post_event(self, body: Any, token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.post(f"{self.url}/minio/events", json=body, headers=headers, timeout=10, **kwargs)


def launch_gunicorn(
    name: str, command: list[str], volume: Volume, log_path: Path, **env: str
) -> tuple[Process, str]:
    """gunicorn serving the app ``name`` (webhook, gateway) on a free port, once it answers
    /healthz; it binds where ``MODELSYNC_<NAME>_BIND`` says."""
    port = free_port()
    environment = child_env(volume, **{f"MODELSYNC_{name.upper()}_BIND": f"127.0.0.1:{port}"}, **env)
    proc = Process(command, environment, log_path)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.alive():
            raise AssertionError(f"{name} exited:\n{proc.log}")
        return http_ok(f"{url}/healthz")

    wait_for(up, 30, what=f"{name} start")
    return proc, url


def launch_webhook(volume: Volume, log_path: Path, **env: str) -> Webhook:
    return Webhook(*launch_gunicorn("webhook", gunicorn_command(), volume, log_path, **env))


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
