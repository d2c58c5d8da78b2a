"""Kafka topic sink: one message per prediction record.

A record counts as delivered only when the broker acknowledged it (``acks=all``). The ones
it did not are handed back to be spilled, and the ones it can never take (larger than the
broker allows, say) are handed back as rejected, so a partial failure neither resends the
rest nor blocks the replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from gateway.errors import SinkError
from modelsync.gatewayconfig import SinkConfig
from modelsync.kafkaproblems import ConnectionProblems
from modelsync.kafkasecurity import librdkafka_settings

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0


class KafkaSink:
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.name
        self.topic = str(config.get("topic"))
        self.timeout = float(config.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS))
        self.bootstrap = str(config.get("bootstrap_servers"))
        self.problems = ConnectionProblems(f"kafka sink {self.name!r}", self.bootstrap, config.security, log)
        self._settings = {
            **librdkafka_settings(config.security),
            **self.problems.settings(),
            "bootstrap.servers": self.bootstrap,
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": int(self.timeout * 1000),
            # A connection not set up in half the time cannot deliver in time: say why first.
            "socket.connection.setup.timeout.ms": max(1000, int(self.timeout * 500)),
            "enable.idempotence": False,
        }
        self._producer: Producer | None = None

    def send(self, lines: Sequence[bytes]) -> None:
        producer = self._producer or self._connect()
        # None: no answer yet; True: delivered; otherwise why not (retriable or not).
        outcome: list[KafkaError | str | bool | None] = [None] * len(lines)

        def delivered(index: int) -> Callable[[KafkaError | None, Message], None]:
            def callback(error: KafkaError | None, _message: Message) -> None:
                outcome[index] = error if error is not None else True

            return callback

        for index, line in enumerate(lines):
            try:
                producer.produce(self.topic, value=line.rstrip(b"\n"), on_delivery=delivered(index))
            except BufferError:
                producer.poll(1.0)  # the local queue is full: let it drain once, then give up on the rest
                break
            except KafkaException as exc:
                outcome[index] = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
            producer.poll(0)
        producer.flush(self.timeout)
        rejected = [lines[i] for i, o in enumerate(outcome) if _permanent(o)]
        retry = [lines[i] for i, o in enumerate(outcome) if o is not True and not _permanent(o)]
        if rejected or retry:
            reason = next(
                (str(o) for o in outcome if o is not None and o is not True), "not acknowledged in time"
            )
            if self.problems.last:  # why the broker did not answer: TLS, SASL, unreachable
                reason = f"{reason}; {self.problems.last}"
            taken = sum(1 for o in outcome if o is True)
            raise SinkError(
                f"kafka at {self.bootstrap} took {taken} of {len(lines)} records: {reason}", retry, rejected
            )
        self.problems.clear()

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self.timeout)
            self._producer = None

    def _connect(self) -> Producer:
        self._producer = Producer(self._settings)
        return self._producer


PERMANENT = (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.INVALID_RECORD, KafkaError.INVALID_MSG)


def _permanent(outcome: KafkaError | str | bool | None) -> bool:
    return isinstance(outcome, KafkaError) and outcome.code() in PERMANENT
