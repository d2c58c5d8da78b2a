"""Fleet mode: read every partition of MinIO's event topic and turn messages into intents.

One thread, one confluent-kafka Consumer that ``assign()``s every partition itself: no
consumer group splits the topic between replicas and nothing is committed, so a replica that
dies leaves nothing behind on the broker. The position lives in the replica's own volume
(:mod:`agent.kafkaposition`) and advances only once the batch's intents are durable; the
agent's loop then applies the intents exactly as the webhook's.

Start: a stored position resumes where the replica stopped; no position (a new replica)
records the topic's end offsets first and asks for a full reconcile, which covers everything
before them; an offset the topic no longer holds restarts that partition from its earliest
offset and asks for a full reconcile. Broker outage: the agent goes on serving and
reconciling on its timer; this thread reconnects with backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from agent import eventmessages, kafkaposition
from agent.eventreport import EventReport
from agent.kafkaposition import Position
from agent.retry import Backoff
from agent.status import StatusReporter
from modelsync.config import Config, KafkaEventsConfig
from modelsync.errors import ModelsyncError
from modelsync.intents import Intent, IntentWriter
from modelsync.kafkaproblems import ConnectionProblems
from modelsync.kafkasecurity import librdkafka_settings

log = logging.getLogger(__name__)
# librdkafka insists on a group id even for assign(); nothing is ever committed under it.
GROUP_PLACEHOLDER = "modelsync-agent-no-commits"
BATCH = 500
POLL_SECONDS = 0.2
REFRESH_SECONDS = 5.0  # partitions added to the topic, watermarks (lag), broker reachable
BROKER_TIMEOUT = 5.0
_DOWN = (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE)
# The brokers answer but refuse this client: as good as down until its security block is fixed.
_REFUSED = (KafkaError._SSL, KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED)


class OffsetLost(ModelsyncError):
    """A partition's next offset is no longer in the topic (retention, or a recreated topic)."""


class EventReader:
    def __init__(
        self,
        config: Config,
        kafka: KafkaEventsConfig,
        status: StatusReporter,
        request_reconcile: Callable[[], None],
    ) -> None:
        self.config = config
        self.kafka = kafka
        self.request_reconcile = request_reconcile
        self.writer = IntentWriter(config.intents_dir)
        self.path = config.state_dir / kafkaposition.FILE_NAME
        self.report = EventReport(kafka, status)
        self.position = Position(kafka.topic)
        self.backoff = Backoff(base=0.5, cap=10.0)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_failure: str | None = None
        # Words each failure with the brokers, the protocol and a hint (TLS, SASL).
        self.problems = ConnectionProblems(
            "event reader", kafka.bootstrap_servers, kafka.security, log, quiet=True
        )

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        self.report.publish()
        self._thread = threading.Thread(target=self._run, name="event-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        log.info("reading events from topic %s at %s", self.kafka.topic, self.kafka.bootstrap_servers)
        while not self._stop.is_set():
            try:
                self._session()
            except Exception as exc:  # never ends the thread: the agent keeps serving regardless
                delay = self.backoff.next_delay()
                self.report.reconnects += 1
                message = f"event topic {self.kafka.topic}: {_describe(exc)}"
                if self.problems.last:
                    message = f"{message} ({self.problems.last})"
                self.report.set_connected(False, message)
                # Said once per distinct failure: an outage of hours must not flood the log.
                level = logging.DEBUG if message == self._last_failure else logging.ERROR
                log.log(level, "%s; reconnecting in %.1fs", message, delay)
                self._last_failure = message
                self._stop.wait(delay)

    def _session(self) -> None:
        consumer = Consumer(self._settings())
        try:
            self._assign(consumer)
            self._last_failure = None
            self.backoff.reset()
            next_refresh = time.monotonic() + REFRESH_SECONDS
            while not self._stop.is_set():
                messages = _next_batch(consumer)
                if messages:
                    self._apply(messages)
                if time.monotonic() >= next_refresh:
                    self._refresh(consumer)
                    next_refresh = time.monotonic() + REFRESH_SECONDS
        finally:
            consumer.close()

    def _settings(self) -> dict[str, object]:
        return {
            **librdkafka_settings(self.kafka.security),
            "bootstrap.servers": self.kafka.bootstrap_servers,
            "group.id": GROUP_PLACEHOLDER,
            "client.id": "modelsync-agent",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",  # a lost offset must be noticed, not skipped silently
            "fetch.wait.max.ms": 100,
            "reconnect.backoff.ms": 200,
            "reconnect.backoff.max.ms": 5000,
            "socket.connection.setup.timeout.ms": int(BROKER_TIMEOUT * 1000),
            "error_cb": self._on_error,  # outages are reported there, once, not per retry
            # librdkafka's lines go to DEBUG: the reader words outages itself, and its last
            # connection failure (FAIL) says why a TLS or SASL handshake did not finish.
            "log_level": 6,
            "log.connection.close": False,
            "logger": self.problems.settings()["logger"],
        }

    def _connected(self) -> None:
        if not self.report.connected and self.report.last_error is not None:
            log.info("event topic %s is readable again", self.kafka.topic)
        self.problems.clear()
        self.report.set_connected(True)

    def _on_error(self, error: KafkaError) -> None:
        if error.code() not in _DOWN and error.code() not in _REFUSED:
            self.problems(error)  # logged once per kind, naming the brokers
            return
        message = f"event topic {self.kafka.topic}: {self.problems.describe(error)}"
        if self.report.connected:
            log.warning(
                "%s; the agent keeps serving and reconciling, reading resumes when it answers", message
            )
        self.report.set_connected(False, message)

    # -- where to read from ---------------------------------------------------------------
    def _assign(self, consumer: Consumer) -> None:
        partitions = self._partitions(consumer)
        stored = kafkaposition.load(self.path, self.kafka.topic)
        if stored is None:
            # A new replica: the topic's end first, then a full reconcile covers all before it.
            stored = Position(self.kafka.topic, {p: self._watermarks(consumer, p)[1] for p in partitions})
            kafkaposition.save(self.path, stored)
            log.info(
                "new replica: reading topic %s from its end %s; a full reconcile covers what came before",
                self.kafka.topic,
                stored.partitions,
            )
            self.request_reconcile()
        self.position = stored
        consumer.assign([TopicPartition(self.kafka.topic, p, self._start(consumer, p)) for p in partitions])
        self._connected()
        log.info("reading partitions %s of topic %s", partitions, self.kafka.topic)

    def _partitions(self, consumer: Consumer) -> list[int]:
        metadata = consumer.list_topics(self.kafka.topic, timeout=BROKER_TIMEOUT)
        topic = metadata.topics.get(self.kafka.topic)
        if topic is None or topic.error is not None or not topic.partitions:
            reason = topic.error.str() if topic is not None and topic.error is not None else "no partitions"
            raise ModelsyncError(f"topic {self.kafka.topic} not available: {reason}")
        return sorted(topic.partitions)

    def _watermarks(self, consumer: Consumer, partition: int) -> tuple[int, int]:
        tp = TopicPartition(self.kafka.topic, partition)
        marks = consumer.get_watermark_offsets(tp, timeout=BROKER_TIMEOUT, cached=False)
        if marks is None:
            raise ModelsyncError(f"no offsets for partition {partition} within {BROKER_TIMEOUT:g}s")
        low, high = marks
        self.report.partition(partition).end = high
        return int(low), int(high)

    def _start(self, consumer: Consumer, partition: int) -> int:
        """Where to read ``partition`` from; a start other than the stored one is stored at
        once, so a warning (and its reconcile) is not repeated at every restart."""
        offset = self.position.partitions.get(partition)
        low, high = self._watermarks(consumer, partition)
        if offset is None:
            log.info(
                "partition %d of topic %s is new to this replica: reading it from its start",
                partition,
                self.kafka.topic,
            )
            offset = self._moved(partition, low)
        elif not low <= offset <= high:
            log.warning(
                "partition %d of topic %s no longer holds offset %d (it holds %d..%d): reading from "
                "its earliest offset, and a full reconcile catches up on what is gone",
                partition,
                self.kafka.topic,
                offset,
                low,
                high,
            )
            self.request_reconcile()
            offset = self._moved(partition, low)
        self.report.partition(partition).position = offset
        return offset

    def _moved(self, partition: int, offset: int) -> int:
        self.position.partitions[partition] = offset
        kafkaposition.save(self.path, self.position)
        return offset

    def _refresh(self, consumer: Consumer) -> None:
        """Partitions added since (read from their start), watermarks for the lag; the broker
        not answering raises, which ends this session and reconnects with backoff."""
        partitions = self._partitions(consumer)
        added = [p for p in partitions if p not in self.report.partitions]
        if added:
            log.info("topic %s gained partitions %s", self.kafka.topic, added)
            starts = [TopicPartition(self.kafka.topic, p, self._start(consumer, p)) for p in added]
            consumer.incremental_assign(starts)
        for partition in partitions:
            self._watermarks(consumer, partition)
        self._connected()

    # -- messages -------------------------------------------------------------------------
    def _apply(self, messages: list[Message]) -> None:
        """Intents of the whole batch durable first, then the position: a crash in between
        re-reads the batch, and duplicate intents are harmless."""
        intents: list[Intent] = []
        handled: list[tuple[Message, eventmessages.Handled]] = []
        advanced: dict[int, int] = {}
        for message in messages:
            error = message.error()
            if error is not None:
                self._message_error(error)
                continue
            result = self._handle(message)
            handled.append((message, result))
            intents.extend(result.intents)
            advanced[int(message.partition() or 0)] = int(message.offset() or 0) + 1
        self.writer.write_all(intents)
        if advanced:
            self.position.partitions.update(advanced)
            kafkaposition.save(self.path, self.position)
            for partition, offset in advanced.items():
                self.report.partition(partition).position = offset
        for message, result in handled:
            self._account(message, result)
        self._connected()

    def _handle(self, message: Message) -> eventmessages.Handled:
        try:
            return eventmessages.handle(message.value(), message.headers(), self.config, self.writer)
        except Exception as exc:  # a message nobody foresaw must not be re-read forever
            reason = f"unexpected {type(exc).__name__}: {str(exc)[:200]}"
            return eventmessages.Handled(eventmessages.Outcome.POISON, reason=reason)

    def _message_error(self, error: KafkaError) -> None:
        if error.code() == KafkaError._AUTO_OFFSET_RESET:
            raise OffsetLost(error.str())  # the new session re-checks every offset
        if error.code() != KafkaError._PARTITION_EOF:
            raise KafkaException(error)

    def _account(self, message: Message, result: eventmessages.Handled) -> None:
        self.report.count(result.outcome.value)
        where = f"{self.kafka.topic}[{message.partition()}]@{message.offset()}"
        if result.outcome is eventmessages.Outcome.POISON:
            log.warning("skipped message %s: %s", where, result.reason)
        elif result.outcome is eventmessages.Outcome.IGNORED:
            log.debug("message %s ignored: %s", where, result.reason)
        for intent in result.intents:
            log.debug(
                "message %s -> intent %s: %s %s:%s",
                where,
                intent["id"],
                intent.get("action", intent["kind"]),
                intent.get("model", "*"),
                intent.get("version", "*"),
            )


def _describe(exc: Exception) -> str:
    """librdkafka's own sentence rather than the repr of its error object."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return str(exc.args[0].str())
    return str(exc)


def _next_batch(consumer: Consumer) -> list[Message]:
    """What has arrived, as soon as one message has: ``consume(n, timeout)`` alone waits out
    its whole window unless ``n`` messages come (0.15 s a message against Tansu), while
    ``poll`` returns at the first, and the rest already fetched are taken without waiting."""
    first = consumer.poll(POLL_SECONDS)
    if first is None:
        return []
    return [first, *consumer.consume(BATCH - 1, 0)]
