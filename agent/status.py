"""``.modelsync/status.json``: the agent's heartbeat and its account of every model.

Written atomically by a background thread every ``sync.heartbeat_seconds`` (so a long download
does not look like a dead agent) and after every change. The webhook's ``/readyz`` and
``/v1/resync?wait`` read it, and so does ``python -m agent status``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from modelsync import atomic

log = logging.getLogger(__name__)
STATUS_VERSION = 1


class StatusReporter:
    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.document: dict[str, Any] = {
            "status_version": STATUS_VERSION,
            "pid": os.getpid(),
            "started_at": time.time(),
            "heartbeat": time.time(),
            "storage": {"reachable": None, "error": None},
            "last_reconcile": None,
            "last_error": None,
            "config": {"valid": None, "error": None, "swaps": 0, "last_swap_at": None},
            "ovms": None,
            "pending_intents": 0,
            # Parts of the loop that failed loop.failure_threshold times in a row (agent/loophealth.py).
            "loop": {"failure_threshold": None, "failing_steps": {}},
            "counters": {"downloaded_files": 0, "downloaded_bytes": 0, "reused_files": 0},
            "models": {},
            "collisions": {},  # bucket models a hand-written config.json entry keeps out
            "refused": {},  # "model:version" -> by, reason, at (agent/refusals.py)
        }

    # -- updates (any thread) -------------------------------------------------------------
    def update(self, **fields: Any) -> None:
        with self._lock:
            self.document.update(fields)

    def storage(self, reachable: bool, error: str | None = None) -> None:
        with self._lock:
            self.document["storage"] = {"reachable": reachable, "error": error, "at": time.time()}

    def error(self, message: str, model: str | None = None, version: int | None = None) -> None:
        with self._lock:
            self.document["last_error"] = {
                "at": time.time(),
                "message": message,
                "model": model,
                "version": version,
            }
            if model is not None:
                entry = self.document["models"].setdefault(model, {"versions": {}})
                entry["last_error"] = message
                if version is not None:
                    entry["versions"].setdefault(str(version), {})["error"] = message

    def loop_threshold(self, threshold: int) -> None:
        with self._lock:
            self.document["loop"]["failure_threshold"] = threshold

    def loop_step(self, step: str, failing: dict[str, Any] | None) -> None:
        """Mark one part of the loop as failing (with its count and error), or clear it."""
        with self._lock:
            steps = self.document["loop"]["failing_steps"]
            if failing is None:
                steps.pop(step, None)
            else:
                steps[step] = failing

    def count(self, name: str, amount: int) -> None:
        with self._lock:
            self.document["counters"][name] = self.document["counters"].get(name, 0) + amount

    def version(self, model: str, version: int, state: str, **info: Any) -> None:
        with self._lock:
            entry = self.document["models"].setdefault(model, {"versions": {}})
            record = entry["versions"].setdefault(str(version), {})
            record.update(state=state, **info)
            if state == "published":
                record.pop("error", None)
                entry["last_sync"] = time.time()
                entry.pop("last_error", None)

    def forget_version(self, model: str, version: int) -> None:
        with self._lock:
            entry = self.document["models"].get(model)
            if entry is not None:
                entry["versions"].pop(str(version), None)
                if not entry["versions"]:
                    self.document["models"].pop(model, None)

    def refusal(self, model: str, version: int, info: dict[str, Any] | None) -> None:
        """Show a refused version (its state and why), or take the refusal away."""
        with self._lock:
            key = f"{model}:{version}"
            if info is not None:
                self.document["refused"][key] = info
                entry = self.document["models"].setdefault(model, {"versions": {}})
                record = entry["versions"].setdefault(str(version), {})
                record.update(state="refused", error=f"refused by {info['by']}: {info['reason']}")
                return
            self.document["refused"].pop(key, None)
            entry = self.document["models"].get(model)
            if entry is not None and entry["versions"].get(str(version), {}).get("state") == "refused":
                entry["versions"].pop(str(version))
                if not entry["versions"]:
                    self.document["models"].pop(model)

    def config_result(self, swapped: bool, error: str | None = None) -> None:
        with self._lock:
            config = self.document["config"]
            config["valid"] = error is None
            config["error"] = error
            if swapped:
                config["swaps"] += 1
                config["last_swap_at"] = time.time()

    # -- writing --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self.document["heartbeat"] = time.time()
            snapshot: dict[str, Any] = _copy(self.document)
            return snapshot

    def flush(self) -> None:
        try:
            atomic.write_json(self.path, self.snapshot(), durable=False)
        except OSError as exc:
            log.error("cannot write status file %s: %s", self.path, exc.strerror)

    def start(self) -> None:
        self.flush()
        self._thread = threading.Thread(target=self._beat, name="status-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.flush()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
