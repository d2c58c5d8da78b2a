"""modelsync.intents.parse: the one way from an intent file's JSON to a typed intent."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelsync import intents
from modelsync.errors import IntentError, SchemaViolation


def object_document(**changes: object) -> dict[str, object]:
    document: dict[str, object] = {
        "intent_version": 1,
        "id": intents.new_intent_id(),
        "kind": "object",
        "created_at": intents.now_iso(),
        "action": "put",
        "event_name": "s3:ObjectCreated:Put",
        "bucket": "models",
        "key": "m/3/model.bin",
        "model": "m",
        "version": 3,
        "path": "model.bin",
        "etag": "abc",
        "size": 12,
    }
    document.update(changes)
    return document


def test_an_object_intent_parses_as_it_was_written() -> None:
    document = object_document()
    intent = intents.parse(document)
    assert intent == document
    assert intent["kind"] == "object" and intent["version"] == 3


def test_a_resync_needs_nothing_but_its_header() -> None:
    writer_intent = {"intent_version": 1, "id": intents.new_intent_id(), "kind": "resync"}
    writer_intent["created_at"] = intents.now_iso()
    assert intents.parse(writer_intent)["kind"] == "resync"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"version": 3.0}, "invalid intent: version: expected an integer, got 3.0"),
        ({"intent_version": 1.0}, "invalid intent: intent_version: expected an integer, got 1.0"),
        # Inside the schema's oneOf (object or resync): the field, and the kind that came closest.
        (
            {"action": "copy"},
            "invalid intent: action: expected one of put, delete (closest choice: kind 'object')",
        ),
        ({"unknown": 1}, "invalid intent: unknown: unknown key (allowed: action, "),
        ({"kind": "resync"}, "invalid intent: action: unknown key (allowed: created_at, id, "),
        (
            {"version": 0},
            "invalid intent: version: 0 is less than the minimum of 1 (closest choice: kind 'object')",
        ),
        ({"size": -1}, "invalid intent: size: -1 is less than the minimum of 0"),
        ({"path": None}, "invalid intent: path: expected string, got NoneType"),
        ({"sequencer": "9" * 65}, "invalid intent: sequencer: '99999"),
    ],
)
def test_what_the_contract_refuses_is_an_intent_error_saying_why(
    changes: dict[str, object], reason: str
) -> None:
    with pytest.raises(IntentError) as refused:
        intents.parse(object_document(**changes))
    assert str(refused.value).startswith(reason), str(refused.value)


@pytest.mark.parametrize("document", [None, [], "intent", 7])
def test_a_document_that_is_not_an_object_is_refused(document: object) -> None:
    with pytest.raises(IntentError, match="invalid intent"):
        intents.parse(document)


def test_the_writer_builds_only_what_parse_accepts(tmp_path: Path) -> None:
    writer = intents.IntentWriter(tmp_path)
    fields = {
        k: v for k, v in object_document().items() if k not in ("intent_version", "id", "kind", "created_at")
    }
    written = writer.new("object", **fields)
    assert intents.parse(written) == written
    assert intents.parse(writer.new("resync", model="m", version=2))["kind"] == "resync"
    with pytest.raises(SchemaViolation):
        writer.new("resync", version=2)  # a version needs its model
