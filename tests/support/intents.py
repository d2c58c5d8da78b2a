"""Intent files as a test writes them by hand, and the records the agent leaves in failed/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from modelsync import schema
from modelsync.intentbatch import BATCH_VERSION
from modelsync.intentlog import SEGMENT_SUFFIX, read_frames
from modelsync.intents import IntentWriter, new_intent_id, now_iso
from tests.support.volume import Volume


def intents_on_disk(directory: Path) -> dict[str, dict[str, Any]]:
    """Every intent in the directory by id, from version-1 files, version-2 batch files and
    the frames of version-3 intent log segments, each checked against the intent schema."""
    return {m["id"]: m for document in documents_on_disk(directory) for m in checked_members(document)}


def members(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The intents one document holds: a batch's members, or the intent itself."""
    return document["intents"] if document["intent_version"] == BATCH_VERSION else [document]


def checked_members(document: dict[str, Any]) -> list[dict[str, Any]]:
    """:func:`members`, the batch and each intent asserted valid against their schemas."""
    if document["intent_version"] == BATCH_VERSION:
        assert schema.is_valid(schema.INTENT_BATCH, document), document
    found = members(document)
    for member in found:
        assert schema.is_valid(schema.INTENT, member), member
    return found


def intent_files(directory: Path) -> list[str]:
    """What the agent has yet to finish: intent files and intent log segments (a segment goes
    only once its webhook process has ended and every intent in it is done)."""
    return sorted(
        p.name
        for p in directory.iterdir()
        if not p.name.startswith(".") and p.name.endswith((".json", SEGMENT_SUFFIX))
    )


class IntentTail:
    """The intents written to a directory since the last call, each checked against the
    intent schema: intent files are read and deleted, log segments read on from where the
    last call stopped (a fuzzer's thousands of cases must not re-read whole segments)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.offsets: dict[str, int] = {}

    def __call__(self) -> list[dict[str, Any]]:
        documents = []
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith("."):
                continue
            if path.name.endswith(".json"):
                documents.append(json.loads(path.read_text()))
                path.unlink()
            elif path.name.endswith(SEGMENT_SUFFIX):
                scan = read_frames(path, self.offsets.get(path.name, 0))
                self.offsets[path.name] = scan.end
                documents += [json.loads(frame.payload) for frame in scan.frames]
        return [member for document in documents for member in checked_members(document)]


def documents_on_disk(directory: Path) -> list[dict[str, Any]]:
    """The JSON documents of the intent files and of every log segment's frames."""
    documents = []
    for path in sorted(directory.iterdir()):
        if path.name.startswith("."):
            continue
        if path.name.endswith(".json"):
            documents.append(json.loads(path.read_text()))
        elif path.name.endswith(SEGMENT_SUFFIX):
            documents += [json.loads(frame.payload) for frame in read_frames(path, 0).frames]
    return documents


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
