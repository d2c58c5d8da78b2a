"""One bucket's models volume, with the agent and (optionally) the webhook as real processes.

The volume's layout (models, config.json, status, intents) is the tests' ``Volume``: one
place says where the agent keeps what.
"""

from __future__ import annotations

import http.client
import json
import time
from pathlib import Path
from typing import Any

from bench.procs import ACCESS_KEY, PY, SECRET_KEY, Proc, clean_env
from bench.s3server import S3
from tests.support.helpers import free_port, minio_event, wait_for
from tests.support.volume import Volume

TOKEN = "bench-webhook-token"


def stack_settings(s3: S3, bucket: str, models: Path, **sync: Any) -> dict[str, Any]:
    return {
        "minio": {
            "endpoint": s3.endpoint,
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "bucket_name": bucket,
            "secure": False,
        },
        # preflight off: the benches upload random bytes, and the RSS floor is measured without it
        "sync": {"interval": 30, "models_path": str(models), "log_level": "INFO", "preflight": "off", **sync},
        "ovms": {"config_path": str(models / "config.json")},
        "webhook": {"auth_token": TOKEN},
    }


class Stack:
    """One bucket's models volume, with the agent and (optionally) the webhook."""

    def __init__(self, s3: S3, bucket: str, workdir: Path, **sync: Any) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.root = workdir
        self.volume = Volume(workdir, workdir / "sync-config.yaml")
        self.models = self.volume.models
        self.models.mkdir(parents=True, exist_ok=True)
        self.config_path = self.volume.config_path
        self.ovms_config = self.volume.ovms_config
        self.status_path = self.volume.status
        self.intents = self.volume.intents
        self.settings = self.volume.settings = stack_settings(s3, bucket, self.models, **sync)
        self.volume.write()
        self.agent: Proc | None = None
        self.webhook: Proc | None = None
        self.webhook_port = 0
        self._conn: http.client.HTTPConnection | None = None

    def write_settings(self) -> None:
        """``settings`` changed: the next process started reads them."""
        self.volume.write()

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(CONFIG_PATH=str(self.config_path), **extra)

    def start_agent(self, timeout: float = 60) -> Proc:
        self.agent = Proc([PY, "-m", "agent", "run"], self.env(), self.root / "agent.log")
        agent = self.agent
        wait_for(lambda: self.ovms_config.exists() or not agent.alive(), timeout, 0.02, "agent start")
        if not agent.alive():
            raise RuntimeError(f"agent exited:\n{(self.root / 'agent.log').read_text()}")
        return agent

    def start_webhook(
        self, workers: int | None = None, threads: int | None = None, app: str | None = None
    ) -> Proc:
        self.webhook_port = free_port()
        extra = {"MODELSYNC_WEBHOOK_BIND": f"127.0.0.1:{self.webhook_port}"}
        if workers is not None:
            extra["MODELSYNC_WEBHOOK_WORKERS"] = str(workers)
        if threads is not None:
            extra["MODELSYNC_WEBHOOK_THREADS"] = str(threads)
        args = [PY, "-m", "gunicorn", "-c", "python:webhook.gunicorn_conf", app or "webhook.app:create_app()"]
        self.webhook = Proc(args, self.env(**extra), self.root / f"webhook-{self.webhook_port}.log")
        wait_for(self._webhook_up, 30, 0.05, "webhook start")
        return self.webhook

    def _webhook_up(self) -> bool:
        assert self.webhook is not None
        if not self.webhook.alive():
            raise RuntimeError(f"webhook exited:\n{self.webhook.log_path.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.webhook_port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def post_event(self, key: str, etag: str | None = None, size: int | None = None) -> int:
        """What MinIO does right after a PUT: POST its event (keep-alive connection)."""
        body = json.dumps(minio_event(self.bucket, key, etag=etag, size=size)).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for _attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.webhook_port, timeout=10)
            try:
                self._conn.request("POST", "/minio/events", body, headers)
                response = self._conn.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
        raise RuntimeError("webhook does not answer")

    def status(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                return dict(json.loads(self.status_path.read_bytes()))
            except (OSError, ValueError):
                time.sleep(0.01)
        return {}

    def served(self) -> dict[str, Any]:
        try:
            document = json.loads(self.ovms_config.read_bytes())
        except (OSError, ValueError):
            return {}
        return {item["config"]["name"]: item["config"] for item in document.get("model_config_list", [])}

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        for proc in (self.webhook, self.agent):
            if proc is not None:
                proc.stop()
