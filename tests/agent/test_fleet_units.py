"""Fleet mode's pure parts: the events.kafka config, the position file's rules, and what one
message of the topic becomes (the same decision as a webhook body)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent import kafkaposition
from agent.eventmessages import Outcome, handle
from agent.health import degraded
from agent.kafkaposition import Position
from agent.statusview import render
from modelsync.config import Config, load_config
from modelsync.errors import ConfigError
from modelsync.intents import IntentWriter, new_intent_id
from tests.support.helpers import minio_event

BASE: dict[str, Any] = {"minio": {"endpoint": "minio:9000", "bucket_name": "models"}}


def config(tmp_path: Path, **sections: Any) -> Config:
    path = tmp_path / "sync-config.yaml"
    document = {**BASE, "sync": {"models_path": str(tmp_path / "models")}, **sections}
    path.write_text(yaml.safe_dump(document))
    return load_config(path, env={})


# -- configuration ---------------------------------------------------------------------------
def test_events_kafka_section_and_its_default_topic(tmp_path: Path) -> None:
    assert config(tmp_path).kafka_events is None  # webhook mode: nothing changes
    kafka = config(tmp_path, events={"kafka": {"bootstrap_servers": "k1:9092,k2:9092"}}).kafka_events
    assert kafka is not None
    assert (kafka.bootstrap_servers, kafka.topic) == ("k1:9092,k2:9092", "minio-events")


@pytest.mark.parametrize(
    ("kafka", "key", "words"),
    [
        ({"topic": "t"}, "events.kafka.bootstrap_servers", "is required"),
        ({"bootstrap_servers": "k:9092", "topic": "no spaces"}, "events.kafka.topic", "does not match"),
        ({"bootstrap_servers": "k:9092", "group": "x"}, "events.kafka.group", "unknown key"),
        ({"bootstrap_servers": ""}, "events.kafka.bootstrap_servers", "non-empty"),
    ],
)
def test_events_kafka_errors_name_file_and_key(
    tmp_path: Path, kafka: dict[str, Any], key: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, events={"kafka": kafka})
    assert caught.value.key == key
    assert words in caught.value.message
    assert str(tmp_path / "sync-config.yaml") in str(caught.value)


# -- the position file -----------------------------------------------------------------------
def test_position_round_trip_and_absent_file(tmp_path: Path) -> None:
    path = tmp_path / kafkaposition.FILE_NAME
    assert kafkaposition.load(path, "minio-events") is None  # a brand-new replica
    kafkaposition.save(path, Position("minio-events", {0: 12, 2: 3}))
    assert json.loads(path.read_text()) == {"topic": "minio-events", "partitions": {"0": 12, "2": 3}}
    assert kafkaposition.load(path, "minio-events") == Position("minio-events", {0: 12, 2: 3})
    assert [p.name for p in tmp_path.iterdir()] == [kafkaposition.FILE_NAME]  # no temp file left


@pytest.mark.parametrize(
    ("content", "warning"),
    [
        ('{"topic": "other", "partitions": {"0": 1}}', "for topic 'other'"),
        ("{not json", "unreadable"),
        ('{"topic": "minio-events", "partitions": {"0": -1}}', "not a position document"),
        ('{"topic": "minio-events", "partitions": {"x": 1}}', "not a position document"),
        ('{"topic": "minio-events", "partitions": {"0": 1.5}}', "not a position document"),
        ('["minio-events"]', "not a position document"),
    ],
)
def test_a_position_not_to_trust_is_a_new_replica(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str, warning: str
) -> None:
    path = tmp_path / kafkaposition.FILE_NAME
    path.write_text(content)
    with caplog.at_level(logging.WARNING):
        assert kafkaposition.load(path, "minio-events") is None
    assert warning in caplog.text and "new replica" in caplog.text


# -- one message -> intents -------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path) -> Config:
    return config(tmp_path, webhook={"max_body_bytes": 4096})


@pytest.fixture
def writer(tmp_path: Path) -> IntentWriter:
    return IntentWriter(tmp_path / "intents")


def value(body: Any) -> bytes:
    return json.dumps(body).encode()


def test_minio_message_becomes_the_webhooks_intent(settings: Config, writer: IntentWriter) -> None:
    key = "resnet/3/sub dir/a+b=c.onnx"  # query-escaped in the record: %2F, + and %2B
    body = minio_event("models", key, etag='"abc"', size=7)
    assert "sub+dir%2Fa%2Bb%3Dc.onnx" in body["Records"][0]["s3"]["object"]["key"]
    handled = handle(value(body), None, settings, writer)
    assert handled.outcome is Outcome.APPLIED
    (intent,) = handled.intents
    assert (intent["kind"], intent["action"], intent["key"]) == ("object", "put", key)
    assert (intent["model"], intent["version"], intent["path"]) == ("resnet", 3, "sub dir/a+b=c.onnx")
    assert (intent["etag"], intent["size"]) == ("abc", 7)
    assert not list(writer.directory.iterdir()), "handle() builds intents, the reader writes them"

    removed = handle(value(minio_event("models", key, event="s3:ObjectRemoved:Delete")), [], settings, writer)
    assert removed.outcome is Outcome.APPLIED and removed.intents[0]["action"] == "delete"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (minio_event("other-bucket", "m/1/f"), "other_bucket"),
        (minio_event("models", "README.md"), "layout"),
        (minio_event("models", "m/1/f", event="s3:ObjectAccessed:Get"), "event_type"),
    ],
)
def test_records_not_ours_are_ignored(settings: Config, writer: IntentWriter, body: Any, reason: str) -> None:
    handled = handle(value(body), None, settings, writer)
    assert (handled.outcome, handled.reason, handled.intents) == (Outcome.IGNORED, reason, [])


def _surrogate_key() -> bytes:
    body = minio_event("models", "m/1/f")
    body["Records"][0]["s3"]["object"]["key"] = "m%2F1%2F\ud800.onnx"  # json.dumps writes \ud800
    return value(body)


def _bad_utf8_key() -> bytes:
    body = minio_event("models", "m/1/f")
    body["Records"][0]["s3"]["object"]["key"] = "m%2F1%2F%FF"
    return value(body)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json {", "bad_json"),
        (_surrogate_key(), "lone UTF-16 surrogate"),
        (b"\xff\xfe", "bad_json"),
        (value({"Records": "nope"}), "schema"),
        (value({"Records": []}), "schema"),
        (value(minio_event("models", "m/1/../../etc/passwd")), "unsafe_key"),
        (value(minio_event("models", ".modelsync/intents/x.json")), "unsafe_key"),
        (_bad_utf8_key(), "bad_key"),
        (value({**minio_event("models", "m/1/f"), "pad": "P" * 5000}), "over the limit of 4096"),
        (None, "empty value"),
    ],
)
def test_poison_is_reported_without_its_body(
    settings: Config, writer: IntentWriter, raw: bytes | None, reason: str
) -> None:
    handled = handle(raw, None, settings, writer)
    assert handled.outcome is Outcome.POISON and not handled.intents
    assert reason in handled.reason
    assert "PPPP" not in handled.reason and len(handled.reason) < 300


RESYNC = [("modelsync-command", b"resync")]


def test_a_surrogate_pair_is_an_ordinary_character(settings: Config, writer: IntentWriter) -> None:
    handled = handle(value(minio_event("models", "m/1/\U0001f600.onnx")), None, settings, writer)
    assert handled.outcome is Outcome.APPLIED and handled.intents[0]["path"] == "\U0001f600.onnx"


def test_resync_command_keeps_the_publishers_id(settings: Config, writer: IntentWriter) -> None:
    intent_id = new_intent_id()
    handled = handle(value({"id": intent_id, "model": "m", "version": 2}), RESYNC, settings, writer)
    assert handled.outcome is Outcome.RESYNC
    (intent,) = handled.intents
    assert (intent["kind"], intent["id"], intent["model"], intent["version"]) == ("resync", intent_id, "m", 2)
    as_dict = handle(value({"id": intent_id}), {"modelsync-command": "resync"}, settings, writer)
    assert as_dict.outcome is Outcome.RESYNC


@pytest.mark.parametrize(
    ("headers", "body", "reason"),
    [
        (RESYNC, {"id": "not-an-id"}, "resync command"),
        (RESYNC, {"id": "0" * 19 + "-" + "a" * 12, "kind": "object"}, "unknown field 'kind'"),
        (RESYNC, {"id": "0" * 19 + "-" + "a" * 12, "version": 1}, "resync command"),  # version needs model
        (RESYNC, ["resync"], "expected"),
        ([("modelsync-command", b"drop-everything")], {"id": "x"}, "unknown modelsync-command"),
    ],
)
def test_bad_commands_are_poison(
    settings: Config, writer: IntentWriter, headers: Any, body: Any, reason: str
) -> None:
    handled = handle(value(body), headers, settings, writer)
    assert handled.outcome is Outcome.POISON and reason in handled.reason


# -- what an operator sees --------------------------------------------------------------------
def test_status_and_health_report_a_disconnected_event_source(tmp_path: Path) -> None:
    settings = config(tmp_path, events={"kafka": {"bootstrap_servers": "k:9092"}})
    source = {
        "type": "kafka",
        "topic": "minio-events",
        "connected": False,
        "last_error": {"at": 1.0, "message": "Local: All broker connections are down"},
        "last_message_at": None,
        "messages": {"applied": 3, "ignored": 0, "resync": 1, "poison": 2},
        "partitions": {"0": {"position": 4, "end": 6, "lag": 2}, "1": {"position": 0, "end": 1, "lag": 1}},
    }
    text = render({"pid": 1, "heartbeat": 0, "event_source": source}, now=10.0)
    assert "event topic minio-events: DISCONNECTED, 2 partition(s), lag 3" in text
    assert "poison 2" in text and "All broker connections are down" in text

    assert degraded(settings) == []  # no status yet: nothing to say
    settings.state_dir.mkdir(parents=True)
    settings.status_path.write_text(json.dumps({"event_source": source}))
    (problem,) = degraded(settings)
    assert "minio-events at k:9092 unreachable" in problem and "every 30s" in problem
    settings.status_path.write_text(json.dumps({"event_source": {**source, "connected": True}}))
    assert degraded(settings) == []
    assert degraded(config(tmp_path)) == []  # webhook mode


def test_a_number_python_will_not_convert_is_bad_json_not_a_crash() -> None:
    from modelsync import notifications

    with pytest.raises(notifications.Refused) as caught:
        notifications.loads(b'{"Records": [{"s3": {"object": {"size": ' + b"9" * 5000 + b"}}}]}")
    assert caught.value.reason is notifications.Refusal.BAD_JSON
    assert "4300 digits" in str(caught.value)
