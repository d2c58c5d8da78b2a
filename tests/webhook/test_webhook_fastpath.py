"""The webhook's fast path (issue 5): compiled schema checks, and the intent writer's fsyncs.

Neither may change behaviour: the compiled check accepts and rejects exactly what jsonschema
does (with jsonschema's message), and a writer never returns before the directory fsync that
follows its renames has finished. (Concurrent requests: tests/webhook/test_group_commit.py.)
"""

from __future__ import annotations

import copy
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from modelsync import atomic, fastschema, intents, schema
from modelsync.errors import SchemaViolation
from tests.support.helpers import minio_event
from tests.support.intents import intents_on_disk
from tests.support.volume import TOKEN

VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=2**64),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    st.text(min_size=60, max_size=140),
    st.just("s3:ObjectCreated:Put"),
    st.just({}),
    st.just([]),
)


def outcome(check: Any, name: str, instance: Any) -> str | None:
    try:
        check(name, instance)
    except SchemaViolation as exc:
        return str(exc)
    return None


def mutate(document: Any, path: list[Any], value: Any, delete: bool) -> Any:
    doc = copy.deepcopy(document)
    target = doc
    for part in path[:-1]:
        target = target[part]
    if delete:
        target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return doc


EVENT = minio_event("models", "m/1/model.bin", etag="a" * 32, size=10)
EVENT_PATHS = [
    ["Records"],
    ["Records", 0, "eventName"],
    ["Records", 0, "eventTime"],
    ["Records", 0, "s3"],
    ["Records", 0, "s3", "bucket", "name"],
    ["Records", 0, "s3", "object"],
    ["Records", 0, "s3", "object", "key"],
    ["Records", 0, "s3", "object", "size"],
    ["Records", 0, "s3", "object", "eTag"],
    ["Records", 0, "s3", "object", "sequencer"],
    ["Records", 0, "s3", "object", "versionId"],
]
INTENT = {
    "intent_version": 1,
    "id": "1700000000000000000-0123456789ab",
    "kind": "object",
    "created_at": "2026-11-22T10:30:00.123Z",
    "action": "put",
    "event_name": "s3:ObjectCreated:Put",
    "bucket": "models",
    "key": "m/1/model.bin",
    "model": "m",
    "version": 1,
    "path": "model.bin",
    "etag": "a" * 32,
    "size": 10,
}
INTENT_PATHS = [[k] for k in [*INTENT, "extra", "sequencer", "event_time"]]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(EVENT_PATHS), VALUES, st.booleans())
def test_compiled_event_check_decides_like_jsonschema(path: list[Any], value: Any, delete: bool) -> None:
    body = mutate(EVENT, path, value, delete)
    assert outcome(fastschema.check, schema.MINIO_EVENT, body) == outcome(
        schema.check, schema.MINIO_EVENT, body
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(INTENT_PATHS), VALUES, st.booleans())
def test_compiled_intent_check_decides_like_jsonschema(path: list[Any], value: Any, delete: bool) -> None:
    intent = mutate(INTENT, path, value, delete)
    assert outcome(fastschema.check, schema.INTENT, intent) == outcome(schema.check, schema.INTENT, intent)


def test_compiled_check_is_in_use_and_does_not_change_the_document() -> None:
    assert fastschema.compiled(schema.MINIO_EVENT) is not None, "fastjsonschema is not installed"
    body = copy.deepcopy(EVENT)
    fastschema.check(schema.MINIO_EVENT, body)
    assert body == EVENT


def test_a_failed_directory_fsync_fails_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    writer = intents.IntentWriter(tmp_path / "intents")

    def broken(directory: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(atomic, "fsync_dir", broken)
    with pytest.raises(OSError):
        writer.write_all([writer.new("resync")])
    monkeypatch.undo()
    assert writer.write_all([writer.new("resync")])  # the next write is not held back


def test_an_intent_consumed_at_once_does_not_fail_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The agent may read and delete an intent between its rename and the writer's return."""
    writer = intents.IntentWriter(tmp_path / "intents")
    real_replace = os.replace
    contents = []

    def replace_then_consume(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        contents.append(Path(dst).read_bytes())  # complete when its name appears
        Path(dst).unlink()

    monkeypatch.setattr(intents.os, "replace", replace_then_consume)
    intent = writer.new("resync", model="m")
    assert writer.write_all([intent]) == [intent["id"]]
    assert json.loads(contents[0]) == intent
    assert not list((tmp_path / "intents").iterdir())


def test_concurrent_events_through_gunicorn_are_all_durable_intents(volume: Any, start_webhook: Any) -> None:
    webhook = start_webhook()
    url = f"{webhook.url}/minio/events"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    bucket = volume.settings["minio"]["bucket_name"]

    def post(i: int) -> list[str]:
        body = minio_event(bucket, f"m{i % 4}/1/file-{i}.bin", etag=f"{i:032x}", size=i)
        response = requests.post(url, json=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
        return list(response.json()["intents"])

    with ThreadPoolExecutor(32) as pool:
        ids = [i for batch in pool.map(post, range(200)) for i in batch]
    assert len(set(ids)) == 200
    assert set(intents_on_disk(volume.intents)) == set(ids)  # frames of the log, schema-checked
    bad = requests.post(url, json={"Records": [{"s3": {}}]}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "eventName" in bad.text  # jsonschema's message still
