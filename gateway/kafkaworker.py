"""The Kafka provider: requests from a topic, answers to a reply topic, at least once.

A request is a message whose value is a KServe v2 inference request (JSON) and whose
headers name the model (``model``, optional ``model-version``, ``correlation-id``,
``reply-to``); see ``gateway/kafkarequest.py``. The answer goes to the reply topic with the
same correlation id; a request that fails for good (not JSON, no model, the model server
refusing it) also goes to the dead-letter topic with the reason. While the model server
cannot be reached at all, nothing is answered or committed: the batch is read again, with a
growing wait, until it can.

Offsets are committed only after every answer of a batch was acknowledged by the broker. A
worker killed mid-batch leaves that batch uncommitted; whoever takes the partition over
answers it again, and marks those answers ``possible-duplicate``: the first batch read from
a newly assigned partition may have been answered by the worker that had it before.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from gateway import metrics
from gateway.inference import Predictor
from gateway.kafkarequest import Handled, Outgoing, Request, RequestHandler, where
from modelsync.gatewayconfig import KafkaConfig

log = logging.getLogger(__name__)

FLUSH_SECONDS = 30.0
FIRST_WAIT = 0.5
MAX_WAIT = 10.0


@dataclass
class _Partition:
    """Where the first batch after an assignment ends: answers up to there may be repeats."""

    suspect_until: int | None = None


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
        self.requests = RequestHandler(config, predictor)
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._wait = FIRST_WAIT

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
        handled = list(self.pool.map(self.requests.handle, messages, suspects))
        if any(item.reply is None for item in handled):
            # The model server is down: nothing is answered or committed, the batch waits.
            log.warning(
                "kafka provider: model server unreachable; reading the batch again in %.1fs", self._wait
            )
            self._rewind(messages, self._wait)
            self._wait = min(self._wait * 2, MAX_WAIT)
            return
        self._wait = FIRST_WAIT
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(str(error))

        try:
            for message, item in zip(messages, handled, strict=True):
                self._produce_answers(message, item, delivered)
        except (KafkaException, BufferError) as exc:
            failures.append(str(exc))
        left = self.producer.flush(FLUSH_SECONDS)
        if failures or left:
            log.error(
                "kafka provider: %d answers were not acknowledged (%s); the batch will be read again",
                len(failures) + left,
                failures[0] if failures else "timed out",
            )
            self._rewind(messages, 1.0)
            return
        for item in handled:
            metrics.KAFKA_MESSAGES.labels("dead_lettered" if item.dead_letter else "replied").inc()
        self._commit(messages)

    def _produce_answers(
        self, message: Message, item: Handled, delivered: Callable[[KafkaError | None, Message], None]
    ) -> None:
        try:
            for out in (item.reply, item.dead_letter):
                if out is not None:
                    self._produce(out, delivered)
        except KafkaException as exc:
            # The answer itself cannot go (larger than the broker takes, say): the request is
            # dead-lettered and its client told why, in a reply small enough to go.
            reason = f"the answer could not be produced: {exc.args[0] if exc.args else exc}"
            request = Request.read(message, self.config, possible_duplicate=False)
            substitute = self.requests.dead(request, reason, status=502)
            for out in (substitute.reply, substitute.dead_letter):
                if out is not None:
                    self._produce(out, delivered)

    def _produce(self, out: Outgoing, delivered: Callable[[KafkaError | None, Message], None]) -> None:
        for _ in range(100):
            try:
                self.producer.produce(
                    out.topic, value=out.value, key=out.key, headers=out.headers, on_delivery=delivered
                )
                return
            except BufferError:
                self.producer.poll(0.1)  # the local queue is full: let deliveries drain
        raise BufferError("the producer's queue stayed full")

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

    def _rewind(self, messages: list[Message], wait: float) -> None:
        starts: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for m in messages:
            topic, partition, offset = where(m)
            starts[(topic, partition)] = min(starts.get((topic, partition), offset), offset)
            ends[(topic, partition)] = max(ends.get((topic, partition), offset), offset + 1)
        for (topic, partition), offset in starts.items():
            # Some of these may have been answered already: their next answers say so.
            state = self._partitions.setdefault((topic, partition), _Partition())
            state.suspect_until = max(state.suspect_until or 0, ends[(topic, partition)])
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("kafka provider: cannot rewind %s[%d]: %s", topic, partition, exc)
        time.sleep(wait)  # do not spin on a broker or model server that just failed us

    def _possible_duplicate(self, message: Message) -> bool:
        topic, partition, offset = where(message)
        state = self._partitions.setdefault((topic, partition), _Partition())
        if state.suspect_until is None:
            state.suspect_until = offset + self.config.batch_size
        return offset < state.suspect_until
