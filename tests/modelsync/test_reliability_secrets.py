"""Secrets: with DEBUG logs through a full sync, no log, file or HTTP answer shows a credential.

The credentials come only from ``*_FILE`` environment variables (as Docker and Kubernetes
secrets are mounted); the YAML file holds none.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import requests

from tests.support import ROOT
from tests.support.helpers import minio_event, minio_record, served_models, wait_for
from tests.support.processes import child_env
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, Bucket
from tests.support.volume import TOKEN, Volume

SECRETS = (ACCESS_KEY, SECRET_KEY, TOKEN)


def test_no_secret_in_logs_files_or_responses_with_debug_logging(
    volume: Volume, bucket: Bucket, start_agent, start_webhook, tmp_path: Path
) -> None:
    secret_dir = tmp_path / "secrets"
    secret_dir.mkdir()
    env = {}
    for name, value in [
        ("MINIO_ACCESS_KEY", ACCESS_KEY),
        ("MINIO_SECRET_KEY", SECRET_KEY),
        ("MODELSYNC_WEBHOOK_TOKEN", TOKEN),
    ]:
        (secret_dir / name).write_text(value + "\n")
        env[f"{name}_FILE"] = str(secret_dir / name)
    del volume.settings["minio"]["access_key"], volume.settings["minio"]["secret_key"]
    del volume.settings["webhook"]["auth_token"]
    volume.settings["sync"].update(log_level="DEBUG", interval=600)
    volume.write()
    agent = start_agent(**env)
    webhook = start_webhook(MODELSYNC_WEBHOOK_ACCESS_LOG="-", **env)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    answers: list[requests.Response] = []

    def call(method: str, path: str, **kwargs: object) -> requests.Response:
        response = requests.request(method, f"{webhook.url}{path}", timeout=30, **kwargs)  # type: ignore[arg-type]
        answers.append(response)
        return response

    # A full sync through the webhook, a removal, a resync with wait.
    bucket.put("secretive/1/model.bin", b"weights")
    assert call(
        "POST", "/minio/events", json=minio_event(bucket.name, "secretive/1/model.bin"), headers=auth
    ).ok
    wait_for(lambda: "secretive" in served_models(volume.ovms_config), what="synced")
    assert call("POST", "/v1/resync?wait=10", json={"model": "secretive"}, headers=auth).status_code == 200
    # Every kind of answer, including the refusals, with the secrets in the request.
    for token in (TOKEN[:-1], TOKEN + "x", ACCESS_KEY, SECRET_KEY, f"Basic {TOKEN}"):
        assert (
            call("POST", "/minio/events", json={}, headers={"Authorization": f"Bearer {token}"}).status_code
            == 401
        )
    call("POST", "/minio/events", data=SECRET_KEY.encode(), headers=auth)
    call("POST", "/minio/events", data=b"x" * (2 * 1024 * 1024), headers=auth)
    bad = minio_record(bucket.name, f"../{SECRET_KEY}")
    call("POST", "/minio/events", json={"Records": [bad]}, headers=auth)
    call("POST", "/v1/resync", json={"model": SECRET_KEY + "/x"}, headers=auth)
    for path in ("/healthz", "/readyz", "/metrics", "/minio/events", "/nope"):
        call("GET", path, headers=auth)
    call("DELETE", "/minio/events", headers=auth)
    status_cli = subprocess.run(
        [sys.executable, "-m", "agent", "status", "--json"],
        env=child_env(volume, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    health_cli = subprocess.run(
        [sys.executable, "-m", "agent", "health"],
        env=child_env(volume, **env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert health_cli.returncode == 0, health_cli.stderr
    assert agent.stop() == 0
    webhook.proc.stop()

    assert "DEBUG" in agent.log and "DEBUG" in webhook.proc.log, "the logs really were at DEBUG"
    texts = {
        "agent log": agent.log,
        "webhook log": webhook.proc.log,
        "agent status --json": status_cli.stdout + status_cli.stderr,
        "agent health": health_cli.stdout + health_cli.stderr,
    }
    for response in answers:
        texts[f"{response.request.method} {response.request.path_url} -> {response.status_code}"] = (
            response.text + "".join(f"{k}: {v}\n" for k, v in response.headers.items())
        )
    for path in volume.models.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    for where, text in texts.items():
        for secret in SECRETS:
            assert secret not in text, f"a secret ({secret[:8]}...) shows in {where}"
    assert len(answers) >= 15
    assert all(r.status_code < 500 for r in answers), [(r.request.path_url, r.status_code) for r in answers]
