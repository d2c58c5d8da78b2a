"""A test's models volume and its configuration file, with the original sidecar's keys."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.s3 import ACCESS_KEY, SECRET_KEY

TOKEN = "test-webhook-token-5b4c3a"


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


def read_status(volume: Volume) -> dict[str, Any]:
    """The agent's status.json, or {} while it is not there (or being replaced)."""
    try:
        return dict(json.loads(volume.status.read_text()))
    except (FileNotFoundError, ValueError):
        return {}


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
            # Tests upload placeholder bytes, not models; tests/agent/test_preflight.py turns it on.
            "preflight": "off",
        },
        "ovms": {"config_path": str(models / "config.json")},
        "webhook": {"auth_token": TOKEN},
    }
