"""Fleet mode's own messages on MinIO's event topic: the resync command.

MinIO sets no Kafka headers, so a message carrying ``modelsync-command`` is unambiguously
ours. The webhook (``POST /v1/resync``) and ``python -m agent resync`` publish it; every agent
reads it and writes a resync intent with the same id, so each replica resyncs and records the
outcome under that id in its own ``.modelsync/results/``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from modelsync.config import KafkaEventsConfig
from modelsync.errors import ModelsyncError
from modelsync.intents import ResyncIntent
from modelsync.kafkaproblems import ConnectionProblems
from modelsync.kafkasecurity import librdkafka_settings

log = logging.getLogger(__name__)

COMMAND_HEADER = "modelsync-command"
RESYNC = "resync"
RESYNC_FIELDS = ("id", "model", "version")


class PublishFailed(ModelsyncError):
    """The broker did not acknowledge the resync command (the caller answers 503 / exits 1)."""


def resync_value(intent: Mapping[str, object]) -> bytes:
    """The command's value: the intent's id and scope, nothing else."""
    return json.dumps({k: intent[k] for k in RESYNC_FIELDS if k in intent}).encode()


def publish_resync(kafka: KafkaEventsConfig, intent: ResyncIntent, timeout: float = 5.0) -> None:
    """Produce the resync command with ``acks=all`` and return once the broker has it."""
    problems = ConnectionProblems("resync", kafka.bootstrap_servers, kafka.security, log, quiet=True)
    producer = Producer(
        {
            **librdkafka_settings(kafka.security),
            **problems.settings(),
            "bootstrap.servers": kafka.bootstrap_servers,
            "acks": "all",
            "message.timeout.ms": max(1000, int(timeout * 1000)),
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
        }
    )
    errors: list[KafkaError] = []

    def delivered(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            errors.append(error)

    try:
        producer.produce(
            kafka.topic,
            value=resync_value(intent),
            key=intent["id"].encode(),
            headers=[(COMMAND_HEADER, RESYNC.encode())],
            on_delivery=delivered,
        )
        left = producer.flush(timeout)
    except (KafkaException, BufferError) as exc:
        raise PublishFailed(f"cannot publish resync on {kafka.topic}: {exc}") from None
    if left or errors:
        reason = errors[0].str() if errors else f"no acknowledgement within {timeout:g}s"
        if problems.last:  # why: TLS, SASL, unreachable
            reason = f"{reason}; {problems.last}"
        raise PublishFailed(f"cannot publish resync on {kafka.topic} at {kafka.bootstrap_servers}: {reason}")
