"""The Kafka provider: requests from a topic, answers to a reply topic, at least once.

A request is a message whose value is a KServe v2 inference request (JSON) and whose
headers name the model (``model``, optional ``model-version``, ``correlation-id``,
``reply-to``). The answer goes to the reply topic with the same correlation id; a request
that fails for good (not JSON, no model, the model server refusing it, or the model server
unreachable through every attempt) also goes to the dead-letter topic with the reason.

Offsets are committed only after every answer of a batch was acknowledged by the broker. A
worker killed mid-batch leaves that batch uncommitted; whoever takes the partition over
answers it again, and marks those answers ``possible-duplicate``: the first batch read from
a newly assigned partition may have been answered by the worker that had it before.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from gateway import metrics
from gateway.inference import Answer, Predictor, error_body
from gateway.rest import NAME, VERSION
from modelsync.gatewayconfig import KafkaConfig

log = logging.getLogger(__name__)

TOPIC = NAME  # same alphabet, and the schema caps the length
TRANSIENT = (502, 503, 504)
FLUSH_SECONDS = 30.0

Headers = list[tuple[str, str | bytes | None]]


@dataclass
class Outgoing:
    topic: str
    value: bytes
    headers: Headers
    key: bytes | None = None


@dataclass
class Handled:
    reply: Outgoing
    dead_letter: Outgoing | None = None


@dataclass
class _Partition:
    """Where the first batch after an assignment ends: answers up to there may be repeats."""

    suspect_until: int | None = None


def where(message: Message) -> tuple[str, int, int]:
    """Topic, partition and offset of a consumed message (never None once consumed)."""
    return str(message.topic()), int(message.partition() or 0), int(message.offset() or 0)


def _origin(prefix: str, message: Message) -> Headers:
    topic, partition, offset = where(message)
    return [
        (f"{prefix}-topic", topic),
        (f"{prefix}-partition", str(partition)),
        (f"{prefix}-offset", str(offset)),
    ]


def _raw_headers(message: Message) -> list[tuple[str, bytes]]:
    raw = message.headers() or []
    items = raw.items() if isinstance(raw, dict) else raw
    return [(k, v.encode() if isinstance(v, str) else v) for k, v in items if v is not None]


def _header_map(message: Message) -> dict[str, str]:
    return {key.lower(): value.decode("utf-8", "replace") for key, value in _raw_headers(message)}


class KafkaWorker:
    def __init__(self, config: KafkaConfig, predictor: Predictor) -> None:
        self.config = config
        self.predictor = predictor
        self.consumer = Consumer(
            {
                "bootstrap.servers": config.bootstrap_servers,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": config.session_timeout_ms,
                "heartbeat.interval.ms": max(config.session_timeout_ms // 6, 100),
                "max.poll.interval.ms": max(config.max_poll_interval_ms, config.session_timeout_ms),
                "logger": log,
            }
        )
        self.producer = Producer(
            {
                "bootstrap.servers": config.bootstrap_servers,
                "acks": "all",
                "linger.ms": 2,
                "enable.idempotence": False,
                "logger": log,
            }
        )
        self.pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="kafka-infer")
        self._partitions: dict[tuple[str, int], _Partition] = {}

    # -- loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        self.consumer.subscribe(
            [self.config.request_topic], on_assign=self._on_assign, on_revoke=self._on_revoke
        )
        log.info(
            "kafka provider: consuming %s as group %s, replying on %s",
            self.config.request_topic,
            self.config.group_id,
            self.config.reply_topic,
        )
        try:
            while not stop.is_set():
                messages = [m for m in self.consumer.consume(self.config.batch_size, 0.5) if self._usable(m)]
                if messages:
                    self.handle_batch(messages)
        finally:
            self.close()
        return 0

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.producer.flush(FLUSH_SECONDS)
        self.consumer.close()

    def _usable(self, message: Message) -> bool:
        error = message.error()
        if error is None:
            return True
        if error.code() != KafkaError._PARTITION_EOF:
            log.warning("kafka consumer: %s", error)
        return False

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions[(tp.topic, tp.partition)] = _Partition()
        log.info("kafka provider: assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._partitions.pop((tp.topic, tp.partition), None)
        log.info("kafka provider: revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    # -- one batch ------------------------------------------------------------------------

    def handle_batch(self, messages: list[Message]) -> None:
        suspects = [self._possible_duplicate(m) for m in messages]
        handled = list(self.pool.map(self.handle, messages, suspects))
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(str(error))

        for item in handled:
            for out in (item.reply, item.dead_letter):
                if out is not None:
                    self.producer.produce(
                        out.topic, value=out.value, key=out.key, headers=out.headers, on_delivery=delivered
                    )
        left = self.producer.flush(FLUSH_SECONDS)
        if failures or left:
            log.error(
                "kafka provider: %d answers were not acknowledged (%s); the batch will be read again",
                len(failures) + left,
                failures[0] if failures else "timed out",
            )
            self._rewind(messages)
            return
        for item in handled:
            metrics.KAFKA_MESSAGES.labels("dead_lettered" if item.dead_letter else "replied").inc()
        self._commit(messages)

    def _commit(self, messages: list[Message]) -> None:
        ends: dict[tuple[str, int], int] = {}
        for m in messages:
            topic, partition, offset = where(m)
            ends[(topic, partition)] = max(ends.get((topic, partition), -1), offset + 1)
        offsets = [TopicPartition(t, p, o) for (t, p), o in ends.items()]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Answered but not committed: the next owner answers again (at least once).
            log.warning("kafka provider: commit failed (%s); those requests may be answered twice", exc)

    def _rewind(self, messages: list[Message]) -> None:
        starts: dict[tuple[str, int], int] = {}
        for m in messages:
            topic, partition, offset = where(m)
            starts[(topic, partition)] = min(starts.get((topic, partition), offset), offset)
        for (topic, partition), offset in starts.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("kafka provider: cannot rewind %s[%d]: %s", topic, partition, exc)
        time.sleep(1.0)  # the broker just failed us: do not spin on it

    def _possible_duplicate(self, message: Message) -> bool:
        topic, partition, offset = where(message)
        state = self._partitions.setdefault((topic, partition), _Partition())
        if state.suspect_until is None:
            state.suspect_until = offset + self.config.batch_size
        return offset < state.suspect_until

    # -- one request ----------------------------------------------------------------------

    def handle(self, message: Message, possible_duplicate: bool = False) -> Handled:
        headers = _header_map(message)
        correlation = headers.get("correlation-id") or "{}-{}-{}".format(*where(message))
        model = headers.get("model") or self.config.default_model or ""
        version = headers.get("model-version") or None
        reply_to = headers.get("reply-to") or self.config.reply_topic
        problem = self._problem(message, model, version, reply_to)
        if problem is not None:
            if not TOPIC.match(reply_to):
                reply_to = self.config.reply_topic
            return self._dead(message, problem, correlation, model, version, reply_to, possible_duplicate)
        answer = self._infer(message, model, version, correlation, possible_duplicate)
        if answer.ok:
            reply = self._reply(message, answer, correlation, model, version, reply_to, possible_duplicate)
            return Handled(reply)
        reason = _error_text(answer)
        if answer.status in TRANSIENT:
            reason = f"model service unavailable after {self.config.max_attempts} attempts: {reason}"
        return self._dead(message, reason, correlation, model, version, reply_to, possible_duplicate, answer)

    def _problem(self, message: Message, model: str, version: str | None, reply_to: str) -> str | None:
        if not model:
            return "no model: set the 'model' header (or gateway.kafka.default_model)"
        if not NAME.match(model):
            return f"invalid model name {model[:130]!r}"
        if version is not None and not VERSION.match(version):
            return f"invalid model version {version[:66]!r}"
        if not TOPIC.match(reply_to):
            return f"invalid reply-to topic {reply_to[:130]!r}"
        try:
            document = json.loads(message.value() or b"")
        except ValueError as exc:
            return f"request is not JSON: {exc}"
        if not isinstance(document, dict):
            return "request is not a JSON object (expected a KServe v2 inference request)"
        return None

    def _infer(
        self, message: Message, model: str, version: str | None, correlation: str, possible_duplicate: bool
    ) -> Answer:
        delay = 0.2
        for attempt in range(1, self.config.max_attempts + 1):
            answer = self.predictor.infer(
                model,
                version,
                message.value() or b"",
                provider="kafka",
                request_id=correlation,
                possible_duplicate=possible_duplicate,
            )
            if answer.status not in TRANSIENT or attempt == self.config.max_attempts:
                return answer
            log.warning(
                "kafka provider: model %s:%s unavailable (attempt %d of %d); retrying in %.1fs",
                model,
                version or "default",
                attempt,
                self.config.max_attempts,
                delay,
            )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        raise AssertionError("unreachable")

    def _base_headers(
        self, message: Message, correlation: str, model: str, version: str | None, possible_duplicate: bool
    ) -> Headers:
        headers: Headers = [
            ("correlation-id", correlation.encode()),
            ("model", model.encode()),
            *_origin("request", message),
        ]
        if version:
            headers.append(("model-version", version.encode()))
        if possible_duplicate:
            headers.append(("possible-duplicate", b"true"))
        return headers

    def _reply(
        self,
        message: Message,
        answer: Answer,
        correlation: str,
        model: str,
        version: str | None,
        reply_to: str,
        possible_duplicate: bool,
    ) -> Outgoing:
        headers = self._base_headers(message, correlation, model, version, possible_duplicate)
        headers += [("status", str(answer.status).encode()), ("content-type", answer.content_type.encode())]
        return Outgoing(reply_to, answer.body, headers, key=correlation.encode())

    def _dead(
        self,
        message: Message,
        reason: str,
        correlation: str,
        model: str,
        version: str | None,
        reply_to: str,
        possible_duplicate: bool,
        answer: Answer | None = None,
    ) -> Handled:
        log.warning(
            "kafka provider: dead-lettering %s[%d]@%d (correlation %s): %s",
            *where(message),
            correlation,
            reason,
        )
        status = answer.status if answer is not None else 400
        reply = self._reply(
            message,
            Answer(status, error_body(reason), "application/json"),
            correlation,
            model,
            version,
            reply_to,
            possible_duplicate,
        )
        original: Headers = list(_raw_headers(message))
        dead = Outgoing(
            self.config.dead_letter_topic,
            message.value() or b"",
            [
                *original,
                ("dead-letter-reason", reason.encode()),
                *_origin("original", message),
            ],
            key=message.key(),
        )
        return Handled(reply, dead)


def _error_text(answer: Answer) -> str:
    try:
        document = json.loads(answer.body)
    except ValueError:
        return f"model server answered {answer.status}"
    if isinstance(document, dict) and isinstance(document.get("error"), str):
        return f"{answer.status}: {document['error']}"
    return f"model server answered {answer.status}"
