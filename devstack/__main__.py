"""Run an embedded S3 store (moto) seeded with a sample model, the webhook and the agent;
and the prediction gateway (REST and Kafka) in front of a KServe v2 model server (MLServer,
standing in for OVMS) with a Kafka-compatible broker (Tansu). The model server serves what the
agent publishes, as OVMS would: devstack/ovmsfollow.py follows the agent's config.json and
loads each version with the OpenVINO runtime. Predictions are recorded in a file and in the
store's 'predictions' bucket.

Everything is written under ./var/. Ports: DEVSTACK_S3_PORT (9000), DEVSTACK_WEBHOOK_PORT
(8080), DEVSTACK_GATEWAY_PORT (9001), DEVSTACK_MODEL_PORT (8000), DEVSTACK_KAFKA_PORT (9092).
Ctrl-C stops everything.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import yaml

import gateway
import webhook
from devstack import sample
from devstack.broker import Broker
from devstack.modelserver import MODEL_DIR, ModelServer
from devstack.ovmsfollow import ConfigFollower

BUCKET = "models"
PREDICTIONS = "predictions"
TOKEN = "devstack-token"  # noqa: S105 - a local demo, printed on purpose
ACCESS_KEY = "devstack"
SECRET_KEY = "devstack-secret"  # noqa: S105 - the embedded store ignores it


TOPICS = {
    "request_topic": "inference-requests",
    "reply_topic": "inference-replies",
    "dead_letter_topic": "inference-dead-letter",
}


def gateway_section(var: Path, model_port: int, kafka_port: int) -> dict[str, object]:
    return {
        "model_service": {"url": f"http://127.0.0.1:{model_port}"},
        "kafka": {
            "enabled": True,
            "bootstrap_servers": f"127.0.0.1:{kafka_port}",
            "session_timeout_ms": 3000,
            **TOPICS,
        },
        "reporting": {
            "inputs": "all",
            "spill_dir": str(var / "spill"),
            "sinks": [
                {"type": "file", "path": str(var / "predictions" / "predictions.jsonl")},
                {"type": "bucket", "bucket": PREDICTIONS, "batch_seconds": 0.5},
            ],
        },
    }


def write_config(var: Path, s3_port: int, gateway_settings: dict[str, object]) -> Path:
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
        "gateway": gateway_settings,
    }
    (var / "predictions").mkdir(exist_ok=True)
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
    client.make_bucket(PREDICTIONS)
    for name, data in sample.files(1).items():
        client.put_object(BUCKET, f"{sample.MODEL}/1/{name}", io.BytesIO(data), len(data))
    return server


def write_sample_files(var: Path) -> Path:
    directory = var / "sample" / "2"
    directory.mkdir(parents=True, exist_ok=True)
    files = sample.files(2)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    keys = [f"{sample.MODEL}/2/{name}" for name in files]
    (directory / "event.json").write_text(json.dumps(sample.event(BUCKET, keys), indent=2))
    return directory


def model_repository(var: Path) -> Path:
    """A writable copy of devstack/modelserver: ovmsfollow.py adds the synced models to it."""
    target = var / "modelserver"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(MODEL_DIR, target, ignore=shutil.ignore_patterns("__init__.py", "__pycache__"))
    return target


def usage(s3: str, webhook_url: str, gateway_url: str, kafka: str, var: Path) -> str:
    sample_dir, model = var / "sample" / "2", sample.MODEL
    puts = "\n".join(
        f"  curl -sX PUT -H 'Content-Type: application/octet-stream' --data-binary @{sample_dir / n} "
        f"{s3}/{BUCKET}/{model}/2/{n}"
        for n in sample.files(2)
    )
    auth = f"-H 'Authorization: Bearer {TOKEN}'"
    body = '{"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3], "data": [1, 2, 3, 4, 5, 6]}]}'
    scaler = '{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}'
    return f"""
modelsync is running: S3 store {s3} (bucket '{BUCKET}'), webhook {webhook_url}, models under {var / "models"}
The sample model {model}:1 (OpenVINO IR: output = input * 1) was in the bucket before the agent started:
the start-up reconcile published it, and the model server (MLServer with the OpenVINO runtime, standing
in for OVMS) loads what config.json names, as OVMS would.

  cat {var / "models" / "config.json"}

Publish version 2 (output = input * 2): upload it (the embedded store takes unsigned requests), then post
the events MinIO would send; within a second version 2 is served in place of version 1:
{puts}
  curl -s {auth} -H 'Content-Type: application/json' --data @{sample_dir / "event.json"} {webhook_url}/minio/events
  ls {var / "models" / model}

Predict through the gateway {gateway_url} (KServe v2, as OVMS): version 2 answers [2, 4, 6, 8]:
  curl -s -H 'X-Request-Id: try-v2' -H 'Content-Type: application/json' -d '{scaler}' {gateway_url}/v2/models/{model}/infer

Find that prediction's record (requestId try-v2) in the '{PREDICTIONS}' bucket (the gateway's bucket sink):
  curl -s '{s3}/{PREDICTIONS}?list-type=2&prefix=predictions/'
  .venv/bin/python -m devstack.records --s3 {s3} try-v2

Ask for a resync and wait for its outcome; look at health and metrics:
  curl -s -X POST {auth} '{webhook_url}/v1/resync?wait=10'
  curl -s {webhook_url}/readyz; curl -s {webhook_url}/metrics | grep modelsync_
  CONFIG_PATH={var / "sync-config.yaml"} .venv/bin/python -m agent status

The same model server also has the test model 'adder' (v1 sums rows, v2 doubles them), and Kafka:
  curl -s -H 'Content-Type: application/json' -d '{body}' {gateway_url}/v2/models/adder/versions/1/infer
  curl -s {gateway_url}/v2/models/adder/ready -o /dev/null -w '%{{http_code}}\\n'
  .venv/bin/python -m devstack.kafka_request --bootstrap {kafka} --model adder --version 2 '{body}'
  tail -n 2 {var / "predictions" / "predictions.jsonl"}

Ctrl-C stops everything.
"""


def port(name: str, default: int) -> int:
    return int(os.environ.get(f"DEVSTACK_{name}_PORT", str(default)))


def main() -> int:
    var = Path(os.environ.get("DEVSTACK_VAR", "var")).resolve()
    s3_port, webhook_port, gateway_port = port("S3", 9000), port("WEBHOOK", 8080), port("GATEWAY", 9001)
    model_port, kafka_port = port("MODEL", 8000), port("KAFKA", 9092)
    var.mkdir(exist_ok=True)
    config_path = write_config(var, s3_port, gateway_section(var, model_port, kafka_port))
    try:
        server = start_s3(s3_port)
    except OSError as exc:
        print(f"cannot start the embedded S3 store on 127.0.0.1:{s3_port}: {exc.strerror}", file=sys.stderr)
        print("set DEVSTACK_S3_PORT to a free port", file=sys.stderr)
        return 1
    write_sample_files(var)
    broker = Broker(var / "tansu.log", kafka_port)
    model_server = ModelServer(var / "mlserver.log", model_dir=model_repository(var), port=model_port)
    try:
        broker.start()
        broker.create_topics(*TOPICS.values())
        model_server.start()
    except Exception as exc:
        print(f"cannot start the broker or the model server: {exc}", file=sys.stderr)
        print("set DEVSTACK_KAFKA_PORT / DEVSTACK_MODEL_PORT to free ports", file=sys.stderr)
        broker.stop()
        server.stop()  # type: ignore[attr-defined]
        return 1
    env = {
        **os.environ,
        "CONFIG_PATH": str(config_path),
        "MODELSYNC_WEBHOOK_BIND": f"127.0.0.1:{webhook_port}",
        "MODELSYNC_GATEWAY_BIND": f"127.0.0.1:{gateway_port}",
    }
    children = [
        subprocess.Popen([sys.executable, "-m", "agent", "run"], env=env),
        subprocess.Popen(webhook.gunicorn_command(), env=env),
        subprocess.Popen(gateway.gunicorn_command(), env=env),
        subprocess.Popen([sys.executable, "-m", "gateway", "kafka"], env=env),
    ]
    follower = ConfigFollower(var / "models" / "config.json", var / "modelserver", model_server.url)
    follower.start()
    local = "http://127.0.0.1"
    print(
        usage(
            f"{local}:{s3_port}", f"{local}:{webhook_port}", f"{local}:{gateway_port}", broker.bootstrap, var
        ),
        flush=True,
    )
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
    codes = [child.wait(timeout=40) for child in children]
    follower.stop()
    model_server.stop()
    broker.stop()
    server.stop()  # type: ignore[attr-defined]
    return 0 if stop.is_set() and all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
