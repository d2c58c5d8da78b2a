"""The sample model of ``make run`` (built with the OpenVINO Python API) with a manifest, and MinIO events."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from devstack.models import scaler_ir

MODEL = "scaler"


def files(version: int) -> dict[str, bytes]:
    """Version ``N`` multiplies its 1x4 input by ``N``: each version gives answers only it gives."""
    model = scaler_ir(float(version))
    manifest = {"files": {name: len(data) for name, data in model.items()}}
    return {**model, "metadata.json": json.dumps(manifest, indent=2).encode()}


def event(bucket: str, keys: list[str]) -> dict[str, Any]:
    """What MinIO would POST (one record per key; MinIO itself sends one per request)."""
    return {
        "EventName": "s3:ObjectCreated:Put",
        "Key": f"{bucket}/{keys[0]}",
        "Records": [
            {
                "eventVersion": "2.0",
                "eventSource": "minio:s3",
                "eventName": "s3:ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": quote_plus(key, safe="")}},
            }
            for key in keys
        ],
    }
