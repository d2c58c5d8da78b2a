"""The prediction reporter: never blocks the request path, never loses a record.

``submit`` puts a :class:`~gateway.prediction.Call` on a bounded in-memory queue and returns;
when the queue is full the call's records go straight to the spill file instead. A background
sender turns calls into prediction records and hands them to the sink in batches; a batch the
sink does not take is spilled, and spilled records are replayed once the sink takes batches
again. One reporter per sink, so a slow sink never holds up another.

A record is lost only if the spill cannot be written (counted as ``dropped``), or if the
process is killed with records still in the queue (SIGTERM drains it first).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Sequence

from gateway import metrics
from gateway.errors import SinkError, SpillError
from gateway.prediction import Call, predictions
from gateway.sinks import Sink
from gateway.spill import Spill

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
RESCAN_SECONDS = 10.0  # how often to look for segments that dead processes left behind

_LIVE: weakref.WeakSet[Reporters] = weakref.WeakSet()


def encode(call: Call) -> list[bytes]:
    return [json.dumps(record, separators=(",", ":")).encode() + b"\n" for record in predictions(call)]


class Reporter:
    """One sink: a queue, its sender thread and its spill, started in the process that uses it
    (gunicorn preloads the app before forking, and threads do not survive a fork)."""

    def __init__(
        self,
        sink: Sink,
        spill: Spill,
        *,
        queue_size: int,
        batch_size: int,
        flush_seconds: float,
        retry_seconds: float,
    ) -> None:
        self.sink = sink
        self.spill = spill
        self.queue_size = queue_size
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.retry_seconds = retry_seconds
        self._pid = -1
        self._start_lock = threading.Lock()
        # A deque, not queue.Queue: append and popleft are atomic, and the request path then
        # takes no lock and notifies no one (the sender looks every flush_seconds).
        self._queue: deque[Call] = deque()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._down_until = 0.0
        self._backoff = retry_seconds
        self._backlog = True  # unknown at start: earlier runs may have left segments
        self._next_rescan = 0.0
        self._depth = metrics.QUEUE_DEPTH.labels(sink=sink.name)

    # -- request path ---------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        if self._pid != os.getpid():
            self.start()
        if len(self._queue) >= self.queue_size:
            self._spill_now(encode(call), reason="queue full")
            return
        self._queue.append(call)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._pid = os.getpid()
            self._queue = deque()
            self._stopping = threading.Event()
            self.spill.prepare()
            self._thread = threading.Thread(target=self._run, name=f"reporter-{self.sink.name}", daemon=True)
            self._thread.start()

    def close(self, timeout: float = 20.0) -> None:
        """Deliver or spill everything queued, then stop the sender."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self._stopping.set()  # also wakes the sender
        thread.join(timeout)
        if thread.is_alive():
            log.error("reporter %s: sender did not stop within %.0fs", self.sink.name, timeout)
            return
        self._thread = None
        self.spill.seal()
        self.sink.close()

    # -- sender ---------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            calls = self._take()
            if calls:
                self._deliver([line for call in calls for line in encode(call)])
            if self._stopping.is_set():
                if not self._queue:
                    return
                continue
            try:
                self._replay()
            except Exception:
                log.exception("reporter %s: replay failed; retrying later", self.sink.name)
                self._mark_down()

    def _take(self) -> list[Call]:
        calls: list[Call] = []
        with contextlib.suppress(IndexError):
            while len(calls) < self.batch_size:
                calls.append(self._queue.popleft())
        if not calls and not self._stopping.is_set():
            self._stopping.wait(self.flush_seconds)
        self._depth.set(len(self._queue))
        return calls

    def _deliver(self, lines: list[bytes]) -> None:
        if time.monotonic() < self._down_until:
            self._spill_now(lines, reason="sink down")
            return
        try:
            self._send(lines)
        except SinkError as exc:
            undelivered = exc.undelivered if exc.undelivered is not None else lines
            metrics.SENT.labels(sink=self.sink.name).inc(len(lines) - len(undelivered))
            self._sink_failed(exc)
            self._spill_now(undelivered, reason="sink down")
            return
        metrics.SENT.labels(sink=self.sink.name).inc(len(lines))
        self._sink_ok()

    def _send(self, lines: list[bytes]) -> None:
        try:
            self.sink.send(lines)
        except SinkError:
            raise
        except Exception as exc:
            # A sink's own bug must not kill the sender (and with it every later record).
            log.exception("reporter %s: the sink failed unexpectedly", self.sink.name)
            raise SinkError(f"unexpected {type(exc).__name__}") from None

    def _replay(self) -> None:
        now = time.monotonic()
        if now >= self._next_rescan:
            self._backlog, self._next_rescan = True, now + RESCAN_SECONDS
        if now < self._down_until or not (self._backlog or self.spill.has_active_data()):
            return
        self.spill.seal()
        for segment in self.spill.claim():
            try:
                for lines in segment.batches(self.batch_size):
                    if self._stopping.is_set() or len(self._queue) > self.queue_size // 2:
                        return  # live records first; the rest of this segment waits
                    try:
                        self._send(lines)
                    except SinkError as exc:
                        if exc.undelivered is not None:
                            # Keep the delivered prefix out of the next replay.
                            segment.advance(lines[: len(lines) - len(exc.undelivered)])
                        self._sink_failed(exc)
                        return
                    segment.advance(lines)
                    metrics.REPLAYED.labels(sink=self.sink.name).inc(len(lines))
                    self._sink_ok()
                log.info("reporter %s: replayed spill segment %s", self.sink.name, segment.path.name)
                segment.finish()
            finally:
                segment.release()
        self._backlog = False

    def _spill_now(self, lines: Sequence[bytes], reason: str) -> None:
        try:
            self.spill.append(list(lines))
        except SpillError as exc:
            metrics.DROPPED.labels(sink=self.sink.name).inc(len(lines))
            log.error("reporter %s: DROPPED %d prediction records: %s", self.sink.name, len(lines), exc)
            return
        self._backlog = True
        metrics.SPILLED.labels(sink=self.sink.name).inc(len(lines))
        log.debug("reporter %s: spilled %d records (%s)", self.sink.name, len(lines), reason)

    def _sink_failed(self, exc: SinkError) -> None:
        if self._down_until == 0.0:
            log.warning(
                "reporter %s: sink is down (%s); spilling to %s", self.sink.name, exc, self.spill.directory
            )
        self._mark_down()

    def _mark_down(self) -> None:
        self._down_until = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, MAX_BACKOFF)

    def _sink_ok(self) -> None:
        if self._down_until != 0.0:
            log.info("reporter %s: sink is back; replaying the spill", self.sink.name)
        self._down_until = 0.0
        self._backoff = self.retry_seconds


class Reporters:
    """Every configured sink, and the inputs policy (none, all, or a sample)."""

    def __init__(self, reporters: Sequence[Reporter], input_rate: float) -> None:
        self.reporters = tuple(reporters)
        self.input_rate = input_rate
        _LIVE.add(self)

    def wants_inputs(self) -> bool:
        if not self.reporters or self.input_rate <= 0.0:
            return False
        return self.input_rate >= 1.0 or random.random() < self.input_rate

    def submit(self, call: Call) -> None:
        for reporter in self.reporters:
            reporter.submit(call)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.close()


def close_all() -> None:
    """Drain every reporter of this process (gunicorn's worker_exit, the Kafka worker's exit)."""
    for reporters in list(_LIVE):
        reporters.close()
