"""``.modelsync/status.json``: the agent's heartbeat and its account of every model.

Written atomically by a background thread every ``sync.heartbeat_seconds`` (so a long download
does not look like a dead agent) and after every change. The webhook's ``/readyz`` and
``/v1/resync?wait`` read it, and so does ``python -m agent status``.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Unpack

from modelsync import atomic
from modelsync.agentstatus import (
    Counter,
    FailingStep,
    ModelStatus,
    RefusalStatus,
    StatusDocument,
    StatusFields,
    VersionInfo,
)
from modelsync.results import VersionOutcome

log = logging.getLogger(__name__)
STATUS_VERSION = 1


class StatusReporter:
    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.document: StatusDocument = {
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
    def update(self, **fields: Unpack[StatusFields]) -> None:
        with self._lock:
            # Keyword arguments checked against StatusFields cannot carry extra keys.
            self.document.update(fields)  # type: ignore[typeddict-item]

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
                entry = self._model(model)
                entry["last_error"] = message
                if version is not None:
                    entry["versions"].setdefault(str(version), {})["error"] = message

    def loop_threshold(self, threshold: int) -> None:
        with self._lock:
            self.document["loop"]["failure_threshold"] = threshold

    def loop_step(self, step: str, failing: FailingStep | None) -> None:
        """Mark one part of the loop as failing (with its count and error), or clear it."""
        with self._lock:
            steps = self.document["loop"]["failing_steps"]
            if failing is None:
                steps.pop(step, None)
            else:
                steps[step] = failing

    def count(self, name: Counter, amount: int) -> None:
        with self._lock:
            self.document["counters"][name] += amount

    def last_error_message(self) -> str | None:
        """The message of the last error reported, None when there was none."""
        with self._lock:
            last = self.document["last_error"]
            return None if last is None else last["message"]

    def version(self, model: str, version: int, state: VersionOutcome, **info: Unpack[VersionInfo]) -> None:
        with self._lock:
            entry = self._model(model)
            record = entry["versions"].setdefault(str(version), {})
            record["state"] = state.value  # first: the key order status.json always had
            record.update(info)  # type: ignore[typeddict-item]  # kwargs: no extra keys
            if state is VersionOutcome.PUBLISHED:
                record.pop("error", None)
                entry["last_sync"] = time.time()
                entry.pop("last_error", None)

    def _model(self, model: str) -> ModelStatus:
        return self.document["models"].setdefault(model, {"versions": {}})

    def forget_version(self, model: str, version: int) -> None:
        with self._lock:
            entry = self.document["models"].get(model)
            if entry is not None:
                entry["versions"].pop(str(version), None)
                if not entry["versions"]:
                    self.document["models"].pop(model, None)

    def refusal(self, model: str, version: int, info: RefusalStatus | None) -> None:
        """Show a refused version (its state and why), or take the refusal away."""
        with self._lock:
            key = f"{model}:{version}"
            if info is not None:
                self.document["refused"][key] = info
                entry = self.document["models"].setdefault(model, {"versions": {}})
                record = entry["versions"].setdefault(str(version), {})
                record["state"] = VersionOutcome.REFUSED
                record["error"] = f"refused by {info['by']}: {info['reason']}"
                return
            self.document["refused"].pop(key, None)
            model_entry = self.document["models"].get(model)
            if model_entry is None:
                return
            if model_entry["versions"].get(str(version), {}).get("state") == VersionOutcome.REFUSED:
                model_entry["versions"].pop(str(version))
                if not model_entry["versions"]:
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
    def snapshot(self) -> StatusDocument:
        with self._lock:
            self.document["heartbeat"] = time.time()
            return copy.deepcopy(self.document)

    def flush(self) -> None:
        # Serialised under the lock rather than deep-copied first: with hundreds of models the
        # copy was most of each heartbeat's CPU (bench/notes/perfbench.md); same bytes written.
        with self._lock:
            self.document["heartbeat"] = time.time()
            data = json.dumps(self.document) + "\n"
        try:
            atomic.write_bytes(self.path, data.encode("utf-8"), durable=False)
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
