"""Progress of a long download, logged at a steady cadence (never once per chunk)."""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)
MB = 1024 * 1024


class Progress:
    """Counts bytes from several download threads; logs percent, MB/s and ETA every ``every`` s."""

    def __init__(self, label: str, total_bytes: int, every: float) -> None:
        self.label = label
        self.total = total_bytes
        self.every = every
        self.done = 0
        self.started = time.monotonic()
        self._next_log = self.started + every
        self._lock = threading.Lock()

    def add(self, amount: int) -> None:
        with self._lock:
            self.done += amount
            now = time.monotonic()
            if now < self._next_log:
                return
            self._next_log = now + self.every
            done, elapsed = self.done, now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        log.info(
            "model %s downloading: %.0f%% (%.1f of %.1f MB) at %.1f MB/s, ETA %s",
            self.label,
            100.0 * done / self.total if self.total else 100.0,
            done / MB,
            self.total / MB,
            rate / MB,
            f"{eta:.0f}s" if eta != float("inf") else "unknown",
        )
