"""One sink's prediction reporter: never blocks the request path, never loses a record.

``submit`` appends a :class:`~gateway.prediction.Call` to a bounded in-memory queue and
returns; when the queue is full, or the reporter is stopping, the call's records go straight
to the spill file instead. A background sender turns calls into prediction records and hands
them to the sink in batches (``batch_size`` records, or whatever ``flush_seconds`` gathered);
what the sink does not take is spilled, and spilled records are replayed once the sink takes
batches again. Records the sink refuses for good (too large for Kafka, a 4xx from an HTTP
receiver) are kept in ``<spill>/rejected/`` instead of blocking the replay forever. One
reporter per sink, so a slow sink never holds up another.

A record is lost only if the spill cannot be written (counted as ``dropped``), or if the
process is killed (SIGKILL) with records still in its queue: SIGTERM spills the queue.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Sequence

from gateway import metrics
from gateway.encoding import encode
from gateway.errors import SinkError, SpillError
from gateway.prediction import Call
from gateway.sinks import Sink
from gateway.spill import Spill

log = logging.getLogger(__name__)

MAX_BACKOFF = 30.0
RESCAN_SECONDS = 10.0  # how often to look for segments that dead processes left behind


def to_retry(exc: SinkError, lines: Sequence[bytes]) -> list[bytes]:
    """The lines of a batch to send again after ``exc``: those the sink says did not arrive,
    or, when it cannot say, all but the ones it refused for good (each copy once: two equal
    records are two predictions)."""
    if exc.undelivered is not None:
        return list(exc.undelivered)
    refused = Counter(exc.rejected)
    retry = []
    for line in lines:
        if refused[line] > 0:
            refused[line] -= 1
        else:
            retry.append(line)
    return retry


class SinkReporter:
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
        # A deque, not queue.Queue: append and popleft are atomic, so the request path takes
        # no lock; it wakes the sender only when a whole batch is waiting.
        self._queue: deque[Call] = deque()
        self._full = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._down_until = 0.0
        self._backoff = retry_seconds
        self._backlog = True  # unknown at start: earlier runs may have left segments
        self._next_rescan = 0.0
        self._depth = metrics.QUEUE_DEPTH.labels(sink=sink.name)
        self._kept_rejected = True
        self._in_flight: list[bytes] = []  # the batch being sent now (spilled if shutdown cannot wait)

    # -- request path ---------------------------------------------------------------------

    def submit(self, call: Call) -> None:
        if self._pid != os.getpid():
            self.start()
        if self._stopping.is_set() or len(self._queue) >= self.queue_size:
            self._spill_now(encode(call), reason="queue full or stopping")
            return
        self._queue.append(call)
        if self._stopping.is_set():
            self._spill_queued()  # close() began meanwhile and may have drained already
        elif len(self._queue) >= self.batch_size:
            self._full.set()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._queue = deque()
            self._full = threading.Event()
            self._stopping = threading.Event()
            with contextlib.suppress(SpillError):
                self.spill.prepare()  # checked at start-up; a failure now shows on the first spill
            self._thread = threading.Thread(target=self._run, name=f"reporter-{self.sink.name}", daemon=True)
            self._pid = os.getpid()  # last: a submit that sees it finds the new queue in place
            self._thread.start()

    def stop(self) -> None:
        """Ask the sender to stop (it spills what is queued); ``close`` waits for it."""
        if self._thread is not None and self._pid == os.getpid():
            self._stopping.set()
            self._full.set()

    def close(self, deadline: float | None = None) -> None:
        """Stop the sender; everything still queued goes to the spill (fast, and safe within
        gunicorn's graceful timeout), to be replayed by the next process. A batch the sink is
        still chewing on at the deadline is spilled too: sent twice at worst, never lost."""
        thread = self._thread
        if thread is None or self._pid != os.getpid():
            return
        self.stop()
        thread.join(max((deadline or time.monotonic() + 10.0) - time.monotonic(), 0.0))
        self._spill_queued()  # a request thread may have raced the stop
        if thread.is_alive():
            in_flight = self._in_flight
            if in_flight:
                self._spill_now(in_flight, reason="sink still busy at shutdown")
            log.error(
                "reporter %s: the sink was still busy at shutdown; its batch was spilled", self.sink.name
            )
            return
        self._thread = None
        self.spill.seal()
        self.sink.close()

    # -- sender ---------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self._step()
            except Exception:
                # Nothing may end this thread: every later record depends on it.
                log.exception("reporter %s: sender step failed; going on", self.sink.name)
                self._mark_down()
        self._spill_queued()

    def _step(self) -> None:
        if len(self._queue) < self.batch_size:
            self._full.wait(self.flush_seconds)
        self._full.clear()
        calls = self._take()
        if calls:
            self._deliver([line for call in calls for line in encode(call)])
        self._depth.set(len(self._queue))
        if not self._stopping.is_set():
            self._replay()

    def _take(self) -> list[Call]:
        calls: list[Call] = []
        with contextlib.suppress(IndexError):
            while len(calls) < self.batch_size:
                calls.append(self._queue.popleft())
        return calls

    def _spill_queued(self) -> None:
        while True:
            calls = self._take()
            if not calls:
                return
            self._spill_now([line for call in calls for line in encode(call)], reason="stopping")

    def _deliver(self, lines: list[bytes]) -> None:
        if time.monotonic() < self._down_until:
            self._spill_now(lines, reason="sink down")
            return
        try:
            self._send(lines)
        except SinkError as exc:
            retry = self._settle(exc, lines)
            metrics.SENT.labels(sink=self.sink.name).inc(len(lines) - len(retry) - len(exc.rejected))
            if retry:
                self._sink_failed(exc)
                self._spill_now(retry, reason="sink down")
            return
        metrics.SENT.labels(sink=self.sink.name).inc(len(lines))
        self._sink_ok()

    def _send(self, lines: list[bytes]) -> None:
        self._in_flight = lines
        try:
            self.sink.send(lines)
        except SinkError:
            raise
        except Exception as exc:
            log.exception("reporter %s: the sink failed unexpectedly", self.sink.name)
            raise SinkError(f"unexpected {type(exc).__name__}") from None
        finally:
            self._in_flight = []

    def _settle(self, exc: SinkError, lines: list[bytes]) -> list[bytes]:
        """Keep what the sink refused for good; return what should be tried again."""
        if exc.rejected:
            self._reject(exc.rejected, str(exc))
        return to_retry(exc, lines)

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
                        nothing_arrived = not exc.rejected and (
                            exc.undelivered is None or len(exc.undelivered) == len(lines)
                        )
                        if nothing_arrived:
                            self._sink_failed(exc)  # try this very batch again later
                            return
                        retry = self._settle(exc, lines)
                        # Part arrived: the rest goes to a new segment, this one moves past it
                        # all, but only once the rest is safe on disk.
                        if not (self._spill_now(retry, reason="replay") and self._kept_rejected):
                            return
                        segment.advance(lines)
                        delivered = len(lines) - len(retry) - len(exc.rejected)
                        metrics.REPLAYED.labels(sink=self.sink.name).inc(delivered)
                        if retry:
                            self._sink_failed(exc)
                            return
                        continue
                    segment.advance(lines)
                    metrics.REPLAYED.labels(sink=self.sink.name).inc(len(lines))
                    self._sink_ok()
                log.info("reporter %s: replayed spill segment %s", self.sink.name, segment.path.name)
                segment.finish()
            finally:
                segment.release()
        self._backlog = False

    def _spill_now(self, lines: Sequence[bytes], reason: str) -> bool:
        if not lines:
            return True
        try:
            self.spill.append(list(lines))
        except SpillError as exc:
            metrics.DROPPED.labels(sink=self.sink.name).inc(len(lines))
            log.error("reporter %s: DROPPED %d prediction records: %s", self.sink.name, len(lines), exc)
            return False
        self._backlog = True
        metrics.SPILLED.labels(sink=self.sink.name).inc(len(lines))
        log.debug("reporter %s: spilled %d records (%s)", self.sink.name, len(lines), reason)
        return True

    def _reject(self, lines: Sequence[bytes], reason: str) -> None:
        self._kept_rejected = True
        try:
            where = self.spill.quarantine(list(lines))
        except SpillError as exc:
            self._kept_rejected = False
            metrics.DROPPED.labels(sink=self.sink.name).inc(len(lines))
            log.error("reporter %s: DROPPED %d refused records: %s", self.sink.name, len(lines), exc)
            return
        metrics.REJECTED.labels(sink=self.sink.name).inc(len(lines))
        log.error(
            "reporter %s: the sink refused %d records for good (%s); kept in %s",
            self.sink.name,
            len(lines),
            reason,
            where,
        )

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
