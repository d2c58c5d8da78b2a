"""The Kafka provider: requests from a topic, answers to a reply topic, at least once.

A request is a message whose value is a KServe v2 inference request (JSON) and whose
headers name the model (``model``, optional ``model-version``, ``correlation-id``,
``reply-to``); see ``gateway/kafka/request.py``. The answer goes to the reply topic with the
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from gateway import metrics
from gateway.inference import Predictor
from gateway.kafka.request import Handled, Outgoing, Request, RequestHandler, where
from modelsync.gatewayconfig import KafkaConfig
from modelsync.kafkaproblems import ConnectionProblems
from modelsync.kafkasecurity import librdkafka_settings

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
        self.problems = ConnectionProblems("kafka provider", config.bootstrap_servers, config.security, log)
        common = {**librdkafka_settings(config.security), **self.problems.settings()}
        self.consumer = Consumer(
            {
                **common,
                "bootstrap.servers": config.bootstrap_servers,
                "group.id": config.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": config.session_timeout_ms,
                "heartbeat.interval.ms": max(config.session_timeout_ms // 6, 100),
                "max.poll.interval.ms": max(config.max_poll_interval_ms, config.session_timeout_ms),
            }
        )
        self.producer = Producer(
            {
                **common,
                "bootstrap.servers": config.bootstrap_servers,
                "acks": "all",
                "linger.ms": 2,
                "enable.idempotence": False,
            }
        )
        self.pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="kafka-infer")
        self.requests = RequestHandler(config, predictor)
        self._partitions: dict[tuple[str, int], _Partition] = {}
        self._wait = FIRST_WAIT
        self._stop = threading.Event()
        self._answered: dict[tuple[str, int, int], Handled] = {}

    # -- loop -----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        self._stop = stop
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
        revoked = {(tp.topic, tp.partition) for tp in partitions}
        for key in [k for k in self._answered if k[:2] in revoked]:
            del self._answered[key]  # the partition's next owner answers these
        log.info("kafka provider: revoked %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions))

    # -- one batch ------------------------------------------------------------------------

    def handle_batch(self, messages: list[Message]) -> None:
        keys = [where(m) for m in messages]
        suspects = [self._possible_duplicate(m) for m in messages]
        # A request the model server already answered is not sent again when its batch is
        # read again (after a failed produce, or another request's outage): its answer is kept.
        todo = [i for i, key in enumerate(keys) if key not in self._answered]
        fresh = self.pool.map(lambda i: self.requests.handle(messages[i], suspects[i]), todo)
        for i, item in zip(todo, fresh, strict=True):
            if item.reply is not None:
                self._answered[keys[i]] = item
        if any(key not in self._answered for key in keys):
            # The model server is down: nothing is answered or committed, the batch waits.
            log.warning(
                "kafka provider: model server unreachable; reading the batch again in %.1fs", self._wait
            )
            self._rewind(messages, self._wait, answered=False)
            self._wait = min(self._wait * 2, MAX_WAIT)
            return
        self._wait = FIRST_WAIT
        handled = [self._answered[key] for key in keys]
        for item, suspect in zip(handled, suspects, strict=True):
            if suspect:
                item.mark_possible_duplicate()  # a kept answer, produced again after a failure
        errors = self._produce_all(messages, handled)
        if errors is not None:
            log.error(
                "kafka provider: %d answers were not acknowledged (%s); the batch will be read again",
                len(errors),
                errors[0],
            )
            self._rewind(messages, 1.0, answered=True)
            return
        for item in handled:
            metrics.KAFKA_MESSAGES.labels("dead_lettered" if item.dead_letter else "replied").inc()
        self._commit(messages)
        for key in keys:
            self._answered.pop(key, None)

    def _produce_all(self, messages: list[Message], handled: list[Handled]) -> list[str] | None:
        """Produce every answer; None once all are acknowledged. An answer the broker can never
        take (too large, a reply topic that does not exist or is not ours) is replaced by a
        dead letter without the request's body and an error reply on the configured topic."""
        failed: dict[int, KafkaError | str] = {}

        def delivered(index: int) -> Callable[[KafkaError | None, Message], None]:
            def callback(error: KafkaError | None, _message: Message) -> None:
                if error is not None:
                    failed[index] = error

            return callback

        for index, (message, item) in enumerate(zip(messages, handled, strict=True)):
            self._produce_item(index, message, item, delivered(index), failed)
        left = self.producer.flush(FLUSH_SECONDS)
        permanent = {i: e for i, e in failed.items() if isinstance(e, KafkaError) and not e.retriable()}
        transient = [str(e) for i, e in failed.items() if i not in permanent]
        if left:
            transient.append(f"{left} not acknowledged within {FLUSH_SECONDS:.0f}s")
        if transient:
            return transient
        if not permanent:
            return None
        substitutes: dict[int, KafkaError | str] = {}
        for index, error in permanent.items():
            request = Request.read(messages[index], self.config, possible_duplicate=True)
            request = replace(request, reply_to=self.config.reply_topic)
            reason = f"the answer could not be produced: {error}"
            substitute = self.requests.dead(request, reason, status=502, with_body=False)
            self._produce_item(index, messages[index], substitute, delivered(index), substitutes)
        failed.clear()
        left = self.producer.flush(FLUSH_SECONDS)
        problems = [str(e) for e in [*failed.values(), *substitutes.values()]]
        return problems + ([f"{left} not acknowledged"] if left else []) or None

    def _produce_item(
        self,
        index: int,
        message: Message,
        item: Handled,
        on_delivery: Callable[[KafkaError | None, Message], None],
        failed: dict[int, KafkaError | str],
    ) -> None:
        for out in (item.reply, item.dead_letter):
            if out is None:
                continue
            try:
                self._produce(out, on_delivery)
            except KafkaException as exc:  # refused before it left (larger than the producer takes)
                failed[index] = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else str(exc)
                return
            except BufferError as exc:
                failed[index] = str(exc)
                return

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

    def _rewind(self, messages: list[Message], wait: float, *, answered: bool) -> None:
        """Read the batch again from its first offset. ``answered``: some answers may have
        reached the broker, so the next answers to these requests say they may be repeats."""
        starts: dict[tuple[str, int], int] = {}
        ends: dict[tuple[str, int], int] = {}
        for m in messages:
            topic, partition, offset = where(m)
            starts[(topic, partition)] = min(starts.get((topic, partition), offset), offset)
            ends[(topic, partition)] = max(ends.get((topic, partition), offset), offset + 1)
        for (topic, partition), offset in starts.items():
            if answered:
                state = self._partitions.setdefault((topic, partition), _Partition())
                state.suspect_until = max(state.suspect_until or 0, ends[(topic, partition)])
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("kafka provider: cannot rewind %s[%d]: %s", topic, partition, exc)
        self._stop.wait(wait)  # do not spin on a broker or model server that just failed us

    def _possible_duplicate(self, message: Message) -> bool:
        topic, partition, offset = where(message)
        state = self._partitions.setdefault((topic, partition), _Partition())
        if state.suspect_until is None:
            state.suspect_until = offset + self.config.batch_size
        return offset < state.suspect_until
