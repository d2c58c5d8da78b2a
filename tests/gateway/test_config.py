"""The ``gateway:`` section: defaults, and errors that name the file and the key."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway import gunicorn_command
from modelsync.config import load_config
from modelsync.errors import ConfigError
from tests.support import ROOT

BASE: dict[str, Any] = {"minio": {"endpoint": "minio:9000", "bucket_name": "models"}}

FULL = """\
minio: {endpoint: "minio:9000", bucket_name: models}
gateway:
  model_service: {url: "http://ovms:8000", timeout_seconds: 5}
  kafka:
    enabled: true
    bootstrap_servers: "kafka:9092"
    request_topic: requests
  reporting:
    inputs: 0.25
    spill_dir: /var/spool/gw
    sinks:
      - {type: file, path: /data/predictions.jsonl, max_bytes: 1048576}
      - {type: kafka, topic: predictions}
      - {type: http, url: "http://logger:8080/", name: logger}
      - {type: bucket, bucket: training-data, batch_records: 100}
"""


def write(tmp_path: Path, document: dict[str, Any] | str) -> Path:
    path = tmp_path / "sync-config.yaml"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    return path


def test_the_original_sidecar_file_has_a_default_gateway(tmp_path: Path) -> None:
    gateway = load_config(write(tmp_path, BASE), env={}).gateway
    assert gateway.rest.enabled and not gateway.kafka.enabled
    assert gateway.reporting.sinks == () and gateway.reporting.input_rate == 0.0


def test_a_full_gateway_section(tmp_path: Path) -> None:
    gateway = load_config(write(tmp_path, FULL), env={}).gateway
    assert gateway.model_service.url == "http://ovms:8000" and gateway.model_service.timeout_seconds == 5
    assert gateway.kafka.request_topic == "requests" and gateway.kafka.reply_topic == "inference-replies"
    assert gateway.reporting.input_rate == 0.25
    assert [s.name for s in gateway.reporting.sinks] == ["file", "kafka", "logger", "bucket"]
    assert gateway.reporting.sinks[1].get("bootstrap_servers") == "kafka:9092"  # from gateway.kafka
    with pytest.raises(AttributeError):
        gateway.kafka.enabled = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("gateway", "key", "words"),
    [
        ({"model_service": {}}, "gateway.model_service.url", "is required"),
        ({"model_service": {"url": "ovms:8000"}}, "gateway.model_service.url", "e.g. http://ovms:8000"),
        ({"model_service": {"url": "http://ovms:99999"}}, "gateway.model_service.url", "out of range"),
        (
            {"model_service": {"url": "http://ovms:8000", "timeout_seconds": 1e300}},
            "gateway.model_service.timeout_seconds",
            "maximum",
        ),
        ({"model_service": {"protocol": "grpc"}}, "gateway.model_service.grpc_target", "is required"),
        (
            {"model_service": {"protocol": "grpc", "grpc_target": "ovms"}},
            "gateway.model_service.grpc_target",
            "invalid value: host:port",
        ),
        ({"model_service": {"protocol": "soap"}}, "gateway.model_service.protocol", "expected one of"),
        ({"grpc": {"bind": "9003"}}, "gateway.grpc.bind", "invalid value: host:port"),
        ({"grpc": {"max_message_bytes": 10}}, "gateway.grpc.max_message_bytes", "minimum"),
        ({"kafka": {"enabled": True}}, "gateway.kafka.bootstrap_servers", "is required"),
        ({"kafka": {"topic": "x"}}, "gateway.kafka.topic", "unknown key"),
        ({"reporting": {"inputs": "some"}}, "gateway.reporting.inputs", "none, all, or a sample rate"),
        ({"reporting": {"inputs": 1.5}}, "gateway.reporting.inputs", "none, all, or a sample rate"),
        (
            {"reporting": {"sinks": [{"type": "file", "path": "rel.jsonl"}]}},
            "gateway.reporting.sinks[0].path",
            "'^/'",
        ),
        (
            {"reporting": {"sinks": [{"type": "syslog"}]}},
            "gateway.reporting.sinks[0].type",
            "expected one of",
        ),
        (
            {"reporting": {"sinks": [{"type": "kafka", "topic": "p"}]}},
            "gateway.reporting.sinks[0].bootstrap_servers",
            "required",
        ),
        (
            {
                "reporting": {
                    "sinks": [{"type": "http", "url": "http://a/"}, {"type": "http", "url": "http://b/"}]
                }
            },
            "gateway.reporting.sinks[1].name",
            "used twice",
        ),
    ],
)
def test_errors_name_the_file_and_the_key(
    tmp_path: Path, gateway: dict[str, Any], key: str, words: str
) -> None:
    path = write(tmp_path, {**BASE, "gateway": gateway})
    with pytest.raises(ConfigError) as failure:
        load_config(path, env={})
    assert failure.value.key == key, str(failure.value)
    assert words in failure.value.message, str(failure.value)
    assert str(path) in str(failure.value)


def start(command: list[str], config: Path) -> subprocess.CompletedProcess[str]:
    """Run a gateway process that is expected to refuse to start."""
    env = {"CONFIG_PATH": str(config), "PATH": "/usr/bin:/bin"}
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_gunicorn_stops_with_one_clear_line_on_a_bad_gateway_section(tmp_path: Path) -> None:
    path = write(tmp_path, {**BASE, "gateway": {"reporting": {"queue_size": 0}}})
    result = start(gunicorn_command(), path)
    assert result.returncode != 0
    assert f"{path}: gateway.reporting.queue_size" in result.stderr + result.stdout


def test_kafka_worker_refuses_to_start_when_kafka_is_off(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    result = start([sys.executable, "-m", "gateway", "kafka"], path)
    assert result.returncode == 2
    assert f"{path}: gateway.kafka.enabled is false" in result.stderr


def test_grpc_settings_and_defaults(tmp_path: Path) -> None:
    default = load_config(write(tmp_path, BASE), env={}).gateway
    assert not default.grpc.enabled and default.grpc.bind == "0.0.0.0:9003"
    assert default.model_service.protocol == "http"
    service = {"protocol": "grpc", "grpc_target": "ovms:9000"}
    gateway = load_config(write(tmp_path, {**BASE, "gateway": {"model_service": service}}), env={}).gateway
    assert (gateway.model_service.protocol, gateway.model_service.grpc_target) == ("grpc", "ovms:9000")


def test_grpc_provider_refuses_to_start_when_off_or_unable_to_bind(tmp_path: Path) -> None:
    path = write(tmp_path, BASE)
    result = start([sys.executable, "-m", "gateway", "grpc"], path)
    assert result.returncode == 2
    assert f"{path}: gateway.grpc.enabled is false" in result.stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        path = write(tmp_path, {**BASE, "gateway": {"grpc": {"enabled": True, "bind": bind}}})
        result = start([sys.executable, "-m", "gateway", "grpc"], path)
    assert result.returncode == 2, result.stderr
    assert f"{path}: gateway.grpc.bind" in result.stderr and "Traceback" not in result.stderr


def test_spill_dir_that_cannot_be_made_is_a_start_up_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    gateway = {
        "reporting": {
            "spill_dir": str(tmp_path / "file" / "spill"),
            "sinks": [{"type": "file", "path": "/tmp/p.jsonl"}],
        }
    }
    path = write(tmp_path, {**BASE, "gateway": gateway})
    result = start(gunicorn_command(), path)
    assert result.returncode != 0
    assert "gateway.reporting.spill_dir" in result.stderr and "Not a directory" in result.stderr
