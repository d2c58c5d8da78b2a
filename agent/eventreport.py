"""The event source's account of itself: ``status.json``'s ``event_source`` and its metrics."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from agent import metrics
from agent.eventmessages import OUTCOMES
from agent.status import StatusReporter
from modelsync.config import KafkaEventsConfig


@dataclass
class PartitionState:
    position: int | None = None  # next offset to read (None: from the beginning, not yet read)
    end: int | None = None  # the partition's high watermark at the last look

    @property
    def lag(self) -> int | None:
        if self.end is None:
            return None
        return max(0, self.end - (self.position or 0))


@dataclass
class EventReport:
    kafka: KafkaEventsConfig
    status: StatusReporter
    connected: bool = False
    last_error: dict[str, Any] | None = None
    last_message_at: float | None = None
    reconnects: int = 0  # sessions given up (broker unreachable, topic gone) and started again
    messages: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    partitions: dict[int, PartitionState] = field(default_factory=dict)

    def set_connected(self, connected: bool, error: str | None = None) -> None:
        self.connected = connected
        metrics.EVENT_SOURCE_CONNECTED.set(1 if connected else 0)
        if error is not None:
            self.last_error = {"at": time.time(), "message": error}
        self.publish()

    def count(self, outcome: str) -> None:
        self.messages[outcome] += 1
        self.last_message_at = time.time()
        metrics.EVENT_MESSAGES.labels(outcome=outcome).inc()

    def partition(self, number: int) -> PartitionState:
        return self.partitions.setdefault(number, PartitionState())

    def publish(self) -> None:
        for number, state in self.partitions.items():
            if state.lag is not None:
                metrics.EVENT_SOURCE_LAG.labels(partition=str(number)).set(state.lag)
        self.status.update(event_source=self.document())

    def document(self) -> dict[str, Any]:
        return {
            "type": "kafka",
            "topic": self.kafka.topic,
            "bootstrap_servers": self.kafka.bootstrap_servers,
            "connected": self.connected,
            "last_error": dict(self.last_error) if self.last_error else None,
            "last_message_at": self.last_message_at,
            "reconnects": self.reconnects,
            "messages": dict(self.messages),
            "partitions": {
                str(n): {"position": s.position, "end": s.end, "lag": s.lag}
                for n, s in sorted(self.partitions.items())
            },
        }
