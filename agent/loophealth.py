"""Each part of the agent's loop runs guarded, backs off on its own, and is seen when it keeps failing.

One part that raises (intake, state, config, reconcile, publish) never keeps the others from
running: it waits out its own backoff while the rest go on. A part that fails
``FAILURE_THRESHOLD`` times in a row is "failing": ``status.json`` lists it under
``loop.failing_steps`` (so the webhook's ``/readyz`` answers 503 and ``python -m agent health``
exits 1), and ``modelsync_agent_loop_failures_consecutive{step}`` counts it. One success clears it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent import metrics
from agent.retry import Backoff
from agent.status import StatusReporter

log = logging.getLogger(__name__)
# Three: one failure may be a blip (a file replaced under us), two a retry that came too soon;
# three in a row, over at least ~1.5 s of backoff, is a part that does not work.
FAILURE_THRESHOLD = 3
STEPS = ("intake", "move_failed", "state", "config", "reconcile", "publish", "rollback")


@dataclass
class StepRecord:
    backoff: Backoff = field(default_factory=Backoff)
    retry_at: float = 0.0  # monotonic
    since: float = 0.0  # wall clock of the first failure in the current run
    error: str = ""


class LoopHealth:
    def __init__(self, status: StatusReporter, threshold: int = FAILURE_THRESHOLD) -> None:
        self.status = status
        self.threshold = threshold
        self.records = {step: StepRecord() for step in STEPS}
        for step in STEPS:
            metrics.LOOP_FAILURES.labels(step=step).set(0)
        status.loop_threshold(threshold)

    def retry_at(self, step: str) -> float:
        """When a failing part may run again (monotonic); 0 when it is not failing."""
        return self.records[step].retry_at

    def run(self, step: str, action: Callable[[], object]) -> bool:
        """Run one part unless it is backing off; False when it raised just now."""
        record = self.records[step]
        if time.monotonic() < record.retry_at:
            return True  # its failure was counted when it happened
        try:
            action()
        except Exception as exc:  # last resort: each known failure is handled where it happens
            self._failed(step, record, f"{type(exc).__name__}: {exc}")
            return False
        if record.backoff.failures:
            self._recovered(step, record)
        return True

    def _failed(self, step: str, record: StepRecord, error: str) -> None:
        delay = record.backoff.next_delay()
        record.retry_at = time.monotonic() + delay
        count = record.backoff.failures
        if count == 1:
            record.since = time.time()
        record.error = error
        metrics.LOOP_FAILURES.labels(step=step).set(count)
        message = f"sync step {step} failed: {error}"
        log.error("%s (%d in a row); retrying in %.1fs", message, count, delay)
        log.debug("traceback of the failed step", exc_info=True)
        self.status.error(message)
        if count >= self.threshold:
            self.status.loop_step(
                step, {"consecutive_failures": count, "since": record.since, "error": error}
            )

    def _recovered(self, step: str, record: StepRecord) -> None:
        log.info("sync step %s works again after %d failure(s)", step, record.backoff.failures)
        record.backoff.reset()
        record.retry_at = 0.0
        metrics.LOOP_FAILURES.labels(step=step).set(0)
        self.status.loop_step(step, None)
