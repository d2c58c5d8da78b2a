"""Real child processes: the agent, its CLI, and gunicorn serving the webhook or the gateway.

A child sees only the environment a test gives it, and logs to a file the test can read.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from tests.support import ROOT
from tests.support.helpers import free_port, http_ok, wait_for
from tests.support.volume import TOKEN, Volume
from webhook import gunicorn_command


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
            # A requests response in a reference cycle keeps its kept-alive connection open
            # until collected, and a stopping gunicorn worker waits for such connections.
            gc.collect()
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
            raise AssertionError(
                f"{self.popen.args} did not stop {timeout:g} s after SIGTERM:\n{self.log[-4000:]}"
            ) from None
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


def agent_cli(
    volume: Volume, *args: str, timeout: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env=child_env(volume, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@dataclass
class Webhook:
    proc: Process
    url: str

    def post_event(self, body: Any, token: str | None = TOKEN, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return requests.post(f"{self.url}/minio/events", json=body, headers=headers, timeout=10, **kwargs)


def gunicorn_pids(master: int) -> list[int]:
    """The master and its workers (read from /proc: no signal to anything else)."""
    pids = [master]
    for task in Path(f"/proc/{master}/task").glob("*"):
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


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
