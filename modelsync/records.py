"""From one MinIO event record to an intent, or to the reason it was ignored.

Shared by the webhook (records POSTed by MinIO) and the agent (records read from MinIO's Kafka
topic in fleet mode): both must decide exactly alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from modelsync import keys
from modelsync.config import Config

CREATED = "s3:ObjectCreated:"
REMOVED = "s3:ObjectRemoved:"


@dataclass(frozen=True)
class Decision:
    fields: dict[str, Any] | None  # intent fields when accepted
    ignored: str | None = None  # reason when acknowledged but not acted upon


def decode_key(escaped: str) -> str:
    # MinIO query-escapes the key in the record (Go url.QueryEscape); it decodes it the
    # same way for the top-level "Key", so do exactly that.
    return unquote_plus(escaped, errors="strict")


def classify(record: dict[str, Any], settings: Config) -> Decision:
    """Raises UnsafeKeyError (-> 422) or UnicodeDecodeError (-> 400); otherwise decides."""
    s3 = record["s3"]
    key = decode_key(s3["object"]["key"])
    keys.check_safe(key)
    if s3["bucket"]["name"] != settings.minio.bucket:
        return Decision(None, "other_bucket")
    event_name: str = record["eventName"]
    if event_name.startswith(CREATED):
        action = "put"
    elif event_name.startswith(REMOVED):
        action = "delete"
    else:
        return Decision(None, "event_type")
    ref = keys.parse_key(key, settings.ovms.model_name)
    if ref is None:
        return Decision(None, "layout")
    fields: dict[str, Any] = {
        "action": action,
        "event_name": event_name,
        "bucket": s3["bucket"]["name"],
        "key": key,
        "model": ref.model,
        "version": ref.version,
        "path": ref.path,
    }
    obj = s3["object"]
    if action == "put" and obj.get("eTag"):
        fields["etag"] = obj["eTag"].strip('"')
    if action == "put" and isinstance(obj.get("size"), int):
        fields["size"] = obj["size"]
    if obj.get("sequencer"):
        fields["sequencer"] = obj["sequencer"]
    if isinstance(record.get("eventTime"), str):
        fields["event_time"] = record["eventTime"]
    return Decision(fields)
