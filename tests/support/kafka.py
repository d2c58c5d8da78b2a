"""Reading the gateway's Kafka answers in tests (the broker itself is ``devstack.broker``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message

from devstack.broker import Broker
from tests.support.volume import Volume


@dataclass(frozen=True)
class Reply:
    headers: dict[str, str]
    body: Any

    @property
    def correlation(self) -> str:
        return self.headers["correlation-id"]


def reply(message: Message) -> Reply:
    raw = message.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    headers = {k: (v.decode() if isinstance(v, bytes) else str(v)) for k, v in items if v is not None}
    value = message.value() or b"null"
    try:
        return Reply(headers, json.loads(value))
    except ValueError:
        return Reply(headers, value)  # a dead letter carries the request as it came, JSON or not


def use_kafka(volume: Volume, broker: Broker, topics: dict[str, str], **options: Any) -> None:
    volume.settings["gateway"]["kafka"] = {
        "enabled": True,
        "bootstrap_servers": broker.bootstrap,
        "group_id": f"group-{topics['requests']}",
        "request_topic": topics["requests"],
        "reply_topic": topics["replies"],
        "dead_letter_topic": topics["dead"],
        "session_timeout_ms": 3000,
        **options,
    }
    volume.write()


def send_request(
    broker: Broker, topic: str, correlation: str, model: str | None, body: Any, **headers: str
) -> None:
    value = body if isinstance(body, bytes) else json.dumps(body).encode()
    all_headers = {"correlation-id": correlation, **({"model": model} if model else {}), **headers}
    broker.send(topic, value, all_headers)


def replies(broker: Broker, topic: str, count: int, timeout: float = 30.0) -> list[Reply]:
    return [reply(m) for m in broker.read(topic, count, timeout)]
