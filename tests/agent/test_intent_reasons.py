"""An intent file the schema refuses inside its oneOf (an object or a resync intent) goes to
failed/ with a reason that names the field and the kind of intent it came closest to, not
"is not valid under any of the given schemas". Real agent process, real file system."""

from __future__ import annotations

from typing import Any

from modelsync import atomic
from tests.support.helpers import wait_for
from tests.support.intents import failed_records, hostile_intent
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def without(intent: dict[str, Any], name: str) -> dict[str, Any]:
    return {k: v for k, v in intent.items() if k != name}


def test_the_reason_in_failed_names_the_field_and_the_closest_kind(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    start_agent()
    resync = without(without(hostile_intent(bucket.name, kind="resync"), "action"), "event_name")
    cases = {
        "version: 0 is less than the minimum of 1 (closest choice: kind 'object')": hostile_intent(
            bucket.name, version=0
        ),
        "size: -1 is less than the minimum of 0 (closest choice: kind 'object')": hostile_intent(
            bucket.name, size=-1
        ),
        "path: is required (closest choice: kind 'object')": without(hostile_intent(bucket.name), "path"),
        "bucket: unknown key (allowed: created_at, id, intent_version, kind, model, version)"
        " (closest choice: kind 'resync')": resync,
    }
    names = {}
    for reason, intent in cases.items():
        names[reason] = f"{intent['id']}.json"
        atomic.write_json(volume.intents / names[reason], intent)
    wait_for(lambda: set(names.values()) <= set(failed_records(volume)), what="the intents in failed/")
    failed = failed_records(volume)
    for reason, name in names.items():
        assert failed[name]["error"] == f"invalid intent: {reason}", failed[name]["error"]
