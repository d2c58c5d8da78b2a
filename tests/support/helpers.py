"""Waiting on conditions (never on sleep), and building MinIO-format events."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote_plus

T = TypeVar("T")


def wait_for(condition: Callable[[], T], timeout: float = 20.0, interval: float = 0.02, what: str = "") -> T:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = condition()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition} (last: {last!r})")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def minio_record(
    bucket: str,
    key: str,
    event: str = "s3:ObjectCreated:Put",
    etag: str | None = None,
    size: int | None = None,
    sequencer: str = "17A1B2C3D4E5F607",
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "key": quote_plus(key, safe=""),
        "contentType": "application/octet-stream",
        "userMetadata": {"content-type": "application/octet-stream"},
        "versionId": "",
        "sequencer": sequencer,
    }
    if etag is not None:
        obj["eTag"] = etag
    if size is not None:
        obj["size"] = size
    return {
        "eventVersion": "2.0",
        "eventSource": "minio:s3",
        "awsRegion": "",
        "eventTime": "2026-11-22T10:30:00.123Z",
        "eventName": event,
        "userIdentity": {"principalId": "minioadmin"},
        "requestParameters": {"principalId": "minioadmin", "region": "", "sourceIPAddress": "127.0.0.1"},
        "responseElements": {"x-amz-id-2": "x", "x-amz-request-id": "y"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "Config",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "minioadmin"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
        "source": {"host": "127.0.0.1", "port": "", "userAgent": "MinIO (linux; amd64) minio-go/v7.0.70"},
    }


def minio_event(bucket: str, key: str, **kwargs: Any) -> dict[str, Any]:
    """A whole webhook body, as MinIO posts it: one record, with the decoded top-level Key."""
    event = kwargs.get("event", "s3:ObjectCreated:Put")
    return {"EventName": event, "Key": f"{bucket}/{key}", "Records": [minio_record(bucket, key, **kwargs)]}


def read_config_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def served_models(config_path: Path) -> dict[str, dict[str, Any]]:
    try:
        document = read_config_json(config_path)
    except (FileNotFoundError, ValueError):
        return {}
    return {item["config"]["name"]: item["config"] for item in document.get("model_config_list", [])}


def http_ok(url: str) -> bool:
    import requests

    try:
        return requests.get(url, timeout=1).ok
    except requests.ConnectionError:
        return False
