"""``python -m agent health``: the original sidecar's checks, for Docker's HEALTHCHECK.

MinIO reachable, the models directory writable, config.json readable and valid, and no part
of the running agent's loop failing again and again (its status file, as ``/readyz`` reads it).
"""

from __future__ import annotations

import json
import os

from agent import ovmsconfig
from agent.storage import Bucket
from modelsync import schema
from modelsync.agentstatus import loop_problems
from modelsync.config import Config
from modelsync.errors import ConfigError, OvmsConfigError


def problems(config: Config) -> list[str]:
    found = []
    problem = Bucket(config.minio).problem()
    if problem is not None:
        found.append(
            f"Cannot connect to MinIO at {config.minio.url} (bucket {config.minio.bucket}): {problem}"
        )
    models = config.sync.models_path
    if not models.is_dir():
        found.append(f"models directory {models} does not exist")
    elif not os.access(models, os.W_OK | os.X_OK):
        found.append(f"Permission denied: models directory {models} is not writable")
    try:
        document, _ = ovmsconfig.read_current(config.ovms.config_path)
        if document is None:
            found.append(f"{config.ovms.config_path} does not exist yet")
        elif not schema.is_valid(schema.OVMS_CONFIG, document):
            found.append(f"{config.ovms.config_path} does not pass the OVMS schema")
    except OvmsConfigError as exc:
        found.append(str(exc))
    try:
        config.check_state_dir()
    except ConfigError as exc:
        found.append(exc.message)
    return found + _loop_problems(config)


def _loop_problems(config: Config) -> list[str]:
    """What the running agent says keeps failing (none before it has written a status)."""
    try:
        status = json.loads(config.status_path.read_bytes())
    except (OSError, ValueError):
        return []
    return loop_problems(status) if isinstance(status, dict) else []


def degraded(config: Config) -> list[str]:
    """What makes the replica slower to learn of changes but still serving (exit 0).

    Fleet mode without its event topic: the agent still reconciles every ``sync.interval``.
    """
    kafka = config.kafka_events
    if kafka is None:
        return []
    try:
        source = json.loads(config.status_path.read_bytes()).get("event_source") or {}
    except (OSError, ValueError, AttributeError):
        return []  # no status yet: problems() and the heartbeat checks speak for that
    if source.get("connected") is False:
        error = (source.get("last_error") or {}).get("message") or "not connected"
        return [
            f"event topic {kafka.topic} at {kafka.bootstrap_servers} unreachable ({error}): "
            f"changes arrive by reconcile only, every {config.sync.interval:g}s"
        ]
    return []
