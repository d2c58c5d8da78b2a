"""Reading the gateway's Kafka answers in tests (the broker itself is ``devstack.broker``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message


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
