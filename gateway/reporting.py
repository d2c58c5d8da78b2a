"""Every configured sink's reporter in one process, and the inputs policy (none, all, or a
sample rate). The process that uses them owns them (the REST app through its predictor, the
Kafka worker's command), and gunicorn's hooks and the Kafka command start and stop them all
at once."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from gateway.prediction import Call
from gateway.sinkreporter import SinkReporter


class Reporting:
    def __init__(self, reporters: Sequence[SinkReporter], input_rate: float) -> None:
        self.reporters = tuple(reporters)
        self.input_rate = input_rate

    def wants_inputs(self) -> bool:
        if not self.reporters or self.input_rate <= 0.0:
            return False
        return self.input_rate >= 1.0 or random.random() < self.input_rate

    def submit(self, call: Call) -> None:
        for reporter in self.reporters:
            reporter.submit(call)

    def start(self) -> None:
        """Start the senders now (not on the first request), so a process that gets no traffic
        still replays what earlier processes spilled."""
        for reporter in self.reporters:
            reporter.start()

    def close(self, seconds: float = 20.0) -> None:
        """Spill every queue and stop every sender at once, then wait for them within one
        shared deadline (gunicorn kills a worker ``graceful_timeout`` after SIGTERM)."""
        deadline = time.monotonic() + seconds
        for reporter in self.reporters:
            reporter.stop()
        for reporter in self.reporters:
            reporter.close(deadline)
