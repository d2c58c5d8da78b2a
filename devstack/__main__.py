"""Run an embedded S3 store (moto) seeded with a sample model, the webhook and the agent.

Everything is written under ./var/. Ports: DEVSTACK_S3_PORT (9000), DEVSTACK_WEBHOOK_PORT
(8080). Ctrl-C stops everything.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

from devstack import sample
from webhook import gunicorn_command

BUCKET = "models"
TOKEN = "devstack-token"  # noqa: S105 - a local demo, printed on purpose
ACCESS_KEY = "devstack"
SECRET_KEY = "devstack-secret"  # noqa: S105 - the embedded store ignores it


def write_config(var: Path, s3_port: int) -> Path:
    models = var / "models"
    models.mkdir(parents=True, exist_ok=True)
    config = {
        "minio": {
            "endpoint": f"http://127.0.0.1:{s3_port}",
            "access_key": ACCESS_KEY,
            "secret_key": SECRET_KEY,
            "bucket_name": BUCKET,
            "secure": False,
        },
        "sync": {"interval": 30, "models_path": str(models), "log_level": "INFO", "settle_seconds": 1},
        "ovms": {"config_path": str(models / "config.json")},
        "webhook": {"auth_token": TOKEN},
    }
    path = var / "sync-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start_s3(port: int) -> object:
    from minio import Minio
    from moto.server import ThreadedMotoServer

    os.environ.setdefault("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = Minio(f"127.0.0.1:{port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
    client.make_bucket(BUCKET)
    for name, data in sample.files().items():
        client.put_object(BUCKET, f"identity/1/{name}", io.BytesIO(data), len(data))
    return server


def write_sample_files(var: Path) -> Path:
    directory = var / "sample"
    directory.mkdir(exist_ok=True)
    for name, data in sample.files().items():
        (directory / name).write_bytes(data)
    keys = [f"identity/2/{name}" for name in sample.files()]
    (directory / "event-identity-2.json").write_text(json.dumps(sample.event(BUCKET, keys), indent=2))
    return directory


def usage(s3: str, webhook: str, var: Path) -> str:
    sample_dir = var / "sample"
    puts = "\n".join(
        f"  curl -sX PUT --data-binary @{sample_dir / n} {s3}/{BUCKET}/identity/2/{n}" for n in sample.files()
    )
    auth = f"-H 'Authorization: Bearer {TOKEN}'"
    return f"""
modelsync is running: S3 store {s3} (bucket '{BUCKET}'), webhook {webhook}, models under {var / "models"}
The sample model identity:1 was in the bucket before the agent started: the start-up reconcile serves it.

  cat {var / "models" / "config.json"}

Publish version 2: upload it (the embedded store takes unsigned requests), then post the events MinIO would send:
{puts}
  curl -s {auth} -H 'Content-Type: application/json' --data @{sample_dir / "event-identity-2.json"} {webhook}/minio/events
  ls {var / "models" / "identity"}

Ask for a resync and wait for its outcome; look at health and metrics:
  curl -s -X POST {auth} '{webhook}/v1/resync?wait=10'
  curl -s {webhook}/readyz; curl -s {webhook}/metrics | grep modelsync_
  CONFIG_PATH={var / "sync-config.yaml"} .venv/bin/python -m agent status

Ctrl-C stops everything.
"""


def main() -> int:
    var = Path(os.environ.get("DEVSTACK_VAR", "var")).resolve()
    s3_port = int(os.environ.get("DEVSTACK_S3_PORT", "9000"))
    webhook_port = int(os.environ.get("DEVSTACK_WEBHOOK_PORT", "8080"))
    var.mkdir(exist_ok=True)
    config_path = write_config(var, s3_port)
    try:
        server = start_s3(s3_port)
    except OSError as exc:
        print(f"cannot start the embedded S3 store on 127.0.0.1:{s3_port}: {exc.strerror}", file=sys.stderr)
        print("set DEVSTACK_S3_PORT to a free port", file=sys.stderr)
        return 1
    write_sample_files(var)
    env = {
        **os.environ,
        "CONFIG_PATH": str(config_path),
        "MODELSYNC_WEBHOOK_BIND": f"127.0.0.1:{webhook_port}",
    }
    children = [
        subprocess.Popen([sys.executable, "-m", "agent", "run"], env=env),
        subprocess.Popen(
            gunicorn_command(),
            env=env,
        ),
    ]
    print(usage(f"http://127.0.0.1:{s3_port}", f"http://127.0.0.1:{webhook_port}", var), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    while not stop.wait(0.5):
        if any(child.poll() is not None for child in children):
            print("a modelsync process exited; stopping", file=sys.stderr)
            break
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    codes = [child.wait(timeout=15) for child in children]
    server.stop()  # type: ignore[attr-defined]
    return 0 if stop.is_set() and all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
