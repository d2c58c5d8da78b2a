"""Kafka topic sink: one message per prediction record, keyed by its request id.

A batch counts as delivered only when the broker acknowledged each message (``acks=all``);
the ones it did not are handed back to be spilled, so a partial failure never resends the
rest.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from gateway.errors import SinkError
from modelsync.gatewayconfig import SinkConfig

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0


class KafkaSink:
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.name
        self.topic = str(config.get("topic"))
        self.timeout = float(config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
        self._settings = {
            "bootstrap.servers": str(config.get("bootstrap_servers")),
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(self.timeout * 1000),
            "enable.idempotence": False,
            "logger": log,  # librdkafka's own lines, in our log format
        }
        self._producer: Producer | None = None

    def send(self, lines: Sequence[bytes]) -> None:
        producer = self._producer or self._connect()
        failed: list[int] = []
        reasons: list[str] = []

        def delivered(index: int) -> Callable[[KafkaError | None, Message], None]:
            def callback(error: KafkaError | None, _message: Message) -> None:
                if error is not None:
                    failed.append(index)
                    reasons.append(str(error))

            return callback

        try:
            for index, line in enumerate(lines):
                producer.produce(self.topic, value=line.rstrip(b"\n"), on_delivery=delivered(index))
                producer.poll(0)
        except (KafkaException, BufferError) as exc:
            producer.flush(self.timeout)
            undelivered = [lines[i] for i in sorted(failed)] + list(lines[index:])
            raise SinkError(f"kafka produce failed: {exc}", undelivered) from None
        left = producer.flush(self.timeout)
        if failed or left:
            # Messages still queued after the flush were never acknowledged either.
            raise SinkError(
                f"kafka did not acknowledge {len(failed) + left} of {len(lines)} records: "
                f"{reasons[0] if reasons else 'timed out'}",
                [lines[i] for i in sorted(failed)] if not left else list(lines),
            )

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout)
            self._producer = None

    def _connect(self) -> Producer:
        self._producer = Producer(self._settings)
        return self._producer
