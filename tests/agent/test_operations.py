"""What operators see: agent metrics, progress lines, JSON logs, and the exact lines the
README's troubleshooting table promises."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from tests.support import ROOT
from tests.support.helpers import free_port, http_ok, served_models, wait_for
from tests.support.metrics import metric
from tests.support.processes import child_env
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def test_agent_metrics_port(volume: Volume, bucket: Bucket, start_agent) -> None:
    port = free_port()
    volume.settings["sync"]["metrics_port"] = port
    volume.write()
    bucket.put("m/1/a.bin", b"a" * 1000)
    bucket.put("m/1/b.bin", b"b" * 500)
    start_agent()
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: http_ok(url), what="metrics endpoint")
    wait_for(
        lambda: metric(url, "modelsync_agent_syncs_total", {"outcome": "published"}) == 1.0,
        what="one sync counted",
    )
    assert metric(url, "modelsync_agent_downloaded_bytes_total") == 1500.0
    assert metric(url, "modelsync_agent_downloaded_files_total") == 2.0
    # The version is counted when it is renamed into place, config.json swapped just after.
    wait_for(lambda: metric(url, "modelsync_agent_config_swaps_total") == 2.0, what="the empty start, then m")
    assert metric(url, "modelsync_agent_failures_total", {"reason": "storage"}) == 0.0
    assert (metric(url, "modelsync_agent_last_reconcile_success_timestamp_seconds") or 0) > 0
    assert metric(url, "modelsync_agent_intents_pending") == 0.0


def test_metrics_are_off_by_default(volume: Volume, bucket: Bucket, start_agent) -> None:
    agent = start_agent()
    wait_for(lambda: volume.status.exists(), what="status")
    assert "agent metrics on" not in agent.log


def test_progress_lines_at_a_steady_cadence(volume: Volume, bucket: Bucket, start_agent) -> None:
    volume.settings["sync"].update(progress_seconds=0.01, download_concurrency=1)
    volume.write()
    weights = os.urandom(40 * 1024 * 1024)  # several write-behind windows (agent/writeback.py)
    bucket.put("big/1/weights.bin", weights)
    agent = start_agent()
    wait_for(lambda: "big" in served_models(volume.ovms_config), 60, what="big synced")
    assert (volume.models / "big" / "1" / "weights.bin").read_bytes() == weights
    lines = [line for line in agent.log.splitlines() if "model big:1 downloading:" in line]
    assert lines, agent.log
    assert "MB/s" in lines[0] and "ETA" in lines[0] and "%" in lines[0]
    assert len(lines) < 40, "one line per cadence tick, not one per 1 MiB chunk"


def test_json_logs_carry_model_and_version(volume: Volume, bucket: Bucket, start_agent) -> None:
    volume.settings["sync"]["log_format"] = "json"
    volume.write()
    bucket.put("j/2/model.onnx", b"x")
    agent = start_agent()
    wait_for(lambda: "Successfully synced model j:2" in agent.log, what="synced")
    records = [json.loads(line) for line in agent.log.splitlines() if line.startswith("{")]
    assert records and len(records) == len([ln for ln in agent.log.splitlines() if ln.strip()])
    synced = next(r for r in records if r["message"] == "Successfully synced model j:2")
    assert (synced["model"], synced["version"], synced["event"], synced["level"]) == (
        "j",
        2,
        "synced",
        "INFO",
    )


def test_original_text_log_format(volume: Volume, bucket: Bucket, start_agent) -> None:
    bucket.put("t/1/model.onnx", b"x")
    agent = start_agent()
    wait_for(lambda: "Successfully synced model t:1" in agent.log, what="synced")
    line = next(ln for ln in agent.log.splitlines() if "Successfully synced model t:1" in ln)
    date, rest = line[:19], line[19:]
    assert rest == " - model_sync - INFO - Successfully synced model t:1"
    assert date[4] == "-" and date[10] == " " and date[13] == ":"


def original_line(log: str, level: str, message: str) -> str:
    """The one line of ``log`` that is the original sidecar's ``date - model_sync - LEVEL - message``."""
    pattern = re.compile(
        rf"^\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d - model_sync - {level} - {re.escape(message)}$", re.M
    )
    found = pattern.findall(log)
    assert found, f"no line '{level} - {message}' in:\n{log}"
    return found[0]


def test_the_original_sidecars_log_lines_during_a_sync(volume: Volume, bucket: Bucket, start_agent) -> None:
    """Log-based alerts written for the polling sidecar keep firing: its lines, its format."""
    bucket.put("t/1/model.onnx", b"x")
    bucket.put("t/1/sub/weights.bin", b"y")
    agent = start_agent()
    wait_for(lambda: "Saved OVMS config with 1 models" in agent.log, what="config saved")
    endpoint = volume.settings["minio"]["endpoint"]
    for message in (
        "Starting continuous model sync with 30s interval",
        f"Connected to MinIO at {endpoint}",
        "Discovered 1 models in MinIO",
        "Updated model.onnx for model t:1",
        "Updated weights.bin for model t:1",
        "Successfully synced model t:1",
        "Saved OVMS config with 1 models",
    ):
        original_line(agent.log, "INFO", message)
    assert agent.log.index("Updated model.onnx") < agent.log.index("Successfully synced model t:1")


# -- the README's troubleshooting table ---------------------------------------------------


def test_cannot_connect_to_minio(volume: Volume, start_agent) -> None:
    volume.settings["minio"]["endpoint"] = f"http://127.0.0.1:{free_port()}"
    volume.write()
    agent = start_agent()
    wait_for(lambda: "endpoint unreachable; retrying in" in agent.log, what="connection error logged")
    line = next(ln for ln in agent.log.splitlines() if "endpoint unreachable" in ln)
    assert f"cannot list s3://{volume.settings['minio']['bucket_name']}/: NewConnectionError" in line
    assert (
        " - model_sync - ERROR - Failed to connect to MinIO: cannot list s3://" in line
    )  # the sidecar's words
    wait_for(
        lambda: json.loads(volume.status.read_text())["storage"]["reachable"] is False,
        what="status reports the bucket unreachable",
    )


def test_no_models_found(volume: Volume, bucket: Bucket, start_agent) -> None:
    bucket.put("README.md", b"not a model")
    agent = start_agent()
    wait_for(lambda: "No models found in MinIO bucket" in agent.log, what="warning")
    original_line(
        agent.log,
        "WARNING",
        f"No models found in MinIO bucket {bucket.name}: expected keys like <model>/<version>/<file>",
    )


def without_root_powers(args: list[str]) -> list[str]:
    """Run as root without the capabilities that ignore file permissions, as a user would."""
    if os.getuid() != 0:
        return args
    return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *args]


def test_permission_denied_on_the_models_directory(volume: Volume, bucket: Bucket) -> None:
    volume.models.chmod(0o555)
    env = child_env(volume)
    run = [sys.executable, "-m", "agent", "run"]
    result = subprocess.run(
        without_root_powers(run), env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert f"cannot create {volume.models}/.modelsync: Permission denied" in result.stderr
    assert f"the models directory {volume.models} must be writable by uid" in result.stderr
    original_line(result.stderr, "ERROR", f"Permission denied: '{volume.models}'")
    assert "Traceback" not in result.stderr
    health = subprocess.run(
        without_root_powers([sys.executable, "-m", "agent", "health"]),
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert health.returncode == 1
    assert f"Permission denied: models directory {volume.models} is not writable" in health.stderr


def test_grafana_dashboard_queries_only_metrics_that_exist() -> None:
    import re

    from prometheus_client import REGISTRY

    import agent.metrics
    import gateway.metrics  # noqa: F401 - and the gateway's
    import webhook.metrics  # noqa: F401 - registers the webhook's metrics

    assert agent.metrics.SYNCS is not None
    dashboard = json.loads((ROOT / "deploy" / "grafana" / "modelsync-dashboard.json").read_text())
    exported = set()
    for family in REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(family.type, [""])
        exported.update(family.name + suffix for suffix in suffixes)
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {name for expr in exprs for name in re.findall(r"modelsync_[a-z_]+", expr)}
    assert len(used) >= 10, used
    assert used <= exported, used - exported


def test_sigterm_mid_download_stops_promptly_and_leaves_nothing_half_made(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    import time

    volume.settings["sync"].update(progress_seconds=0.01, download_concurrency=1)
    volume.write()
    bucket.put("huge/1/weights.bin", os.urandom(256 * 1024 * 1024))
    agent = start_agent(wait_ready=False)
    wait_for(lambda: "model huge:1 downloading:" in agent.log, 60, 0.005, what="download under way")
    asked = time.monotonic()
    assert agent.stop(timeout=10) == 0, agent.log
    assert time.monotonic() - asked < 10
    model_dir = volume.models / "huge"
    assert not [p.name for p in model_dir.iterdir() if p.name.startswith(".")], "staging left behind"
    version = model_dir / "1" / "weights.bin"
    assert not version.exists() or version.stat().st_size == 256 * 1024 * 1024
