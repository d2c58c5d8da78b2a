"""Intent files as a test writes them by hand, and the records the agent leaves in failed/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelsync import schema
from modelsync.intentbatch import BATCH_SUFFIX
from modelsync.intents import IntentWriter, new_intent_id, now_iso
from tests.support.volume import Volume


def intents_on_disk(directory: Path) -> dict[str, dict[str, Any]]:
    """Every intent in the directory by id, from version-1 files and version-2 batch files,
    each checked against the intent schema."""
    found: dict[str, dict[str, Any]] = {}
    for path in directory.glob("*.json"):
        if path.name.startswith("."):
            continue
        document = json.loads(path.read_text())
        if path.name.endswith(BATCH_SUFFIX):
            assert schema.is_valid(schema.INTENT_BATCH, document), document
            members = document["intents"]
        else:
            members = [document]
        for member in members:
            assert schema.is_valid(schema.INTENT, member), member
            found[member["id"]] = member
    return found


def failed_records(volume: Volume) -> dict[str, dict[str, Any]]:
    failed = volume.models / ".modelsync" / "failed"
    return {p.name: json.loads(p.read_text()) for p in failed.glob("*.json")} if failed.is_dir() else {}


def put_intent(writer: IntentWriter, bucket_name: str, key: str) -> None:
    """The intent the webhook writes for MinIO's event of an upload of ``key``."""
    model, version, path = key.split("/", 2)
    intent = writer.new(
        "object",
        action="put",
        event_name="s3:ObjectCreated:Put",
        bucket=bucket_name,
        key=key,
        model=model,
        version=int(version),
        path=path,
    )
    writer.write_all([intent])


def hostile_intent(bucket_name: str, **overrides: Any) -> dict[str, Any]:
    intent: dict[str, Any] = {
        "intent_version": 1,
        "id": new_intent_id(),
        "kind": "object",
        "created_at": now_iso(),
        "action": "put",
        "event_name": "s3:ObjectCreated:Put",
        "bucket": bucket_name,
        "key": "m/1/model.bin",
        "model": "m",
        "version": 1,
        "path": "model.bin",
    }
    intent.update(overrides)
    return intent
