"""``python -m agent health | status | resync`` and start-up errors, as real processes."""

from __future__ import annotations

import json

from tests.support.helpers import free_port, served_models, wait_for
from tests.support.processes import agent_cli
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def test_config_error_exits_non_zero_naming_file_and_key(volume: Volume) -> None:
    volume.settings["minio"]["bucket_name"] = "Not_A_Bucket"
    volume.write()
    result = agent_cli(volume, "run")
    assert result.returncode == 2
    assert f"configuration error: {volume.config_path}: minio.bucket_name" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_credentials_name_the_key(volume: Volume) -> None:
    del volume.settings["minio"]["secret_key"]
    volume.write()
    result = agent_cli(volume, "run")
    assert result.returncode == 2
    assert "minio.secret_key: is required" in result.stderr


def test_health_when_all_is_well_and_when_minio_is_down(volume: Volume, bucket: Bucket, start_agent) -> None:
    start_agent()
    healthy = agent_cli(volume, "health")
    assert healthy.returncode == 0, healthy.stderr
    volume.settings["minio"]["endpoint"] = f"http://127.0.0.1:{free_port()}"
    volume.write()
    sick = agent_cli(volume, "health")
    assert sick.returncode == 1
    assert "Cannot connect to MinIO at http://127.0.0.1:" in sick.stderr


def test_health_reports_an_unwritable_models_directory(volume: Volume, bucket: Bucket) -> None:
    volume.settings["sync"]["models_path"] = str(volume.root / "missing")
    volume.write()
    result = agent_cli(volume, "health")
    assert result.returncode == 1
    assert "models directory" in result.stderr


def test_status_table_and_json(volume: Volume, bucket: Bucket, start_agent) -> None:
    assert agent_cli(volume, "status").returncode == 1  # nothing has run yet
    bucket.put("vision/4/model.onnx", b"onnx")
    start_agent()
    wait_for(lambda: "vision" in served_models(volume.ovms_config), what="vision synced")
    wait_for(lambda: "vision" in json.loads(volume.status.read_text())["models"], what="status updated")
    table = agent_cli(volume, "status")
    assert table.returncode == 0
    assert "MODEL" in table.stdout
    row = next(line for line in table.stdout.splitlines() if line.startswith("vision"))
    assert row.split()[:4] == ["vision", "4", "published", "1"]
    document = json.loads(agent_cli(volume, "status", "--json").stdout)
    assert document["models"]["vision"]["versions"]["4"]["state"] == "published"


def test_resync_command_waits_for_the_outcome(volume: Volume, bucket: Bucket, start_agent) -> None:
    start_agent()
    # After the start-up reconcile, only the resync can find the object (the next is 30 s away).
    wait_for(lambda: json.loads(volume.status.read_text()).get("last_reconcile"), what="first reconcile")
    bucket.put("late/1/model.onnx", b"arrived without an event")
    result = agent_cli(volume, "resync", "--model", "late", "--version", "1", "--wait", "20")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["versions"] == {"late:1": "published"}
    assert (volume.models / "late" / "1" / "model.onnx").read_bytes() == b"arrived without an event"


def test_resync_version_needs_model(volume: Volume) -> None:
    result = agent_cli(volume, "resync", "--version", "1")
    assert result.returncode == 2
    assert "--version needs --model" in result.stderr
