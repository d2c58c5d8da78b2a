"""Rollback after OVMS refuses a version it was given (with ``ovms.rest_url`` set).

When a version is published, what it replaces is kept (a version replaced in place keeps its
old directory under a hidden name) until OVMS's ``GET /v1/config`` says the new one is
AVAILABLE. If OVMS reports it failed to load (state ``LOADING_FAILED``, or any state but
AVAILABLE with an error code other than OK), the agent puts the previous content back (the
old directory, or no directory for a new version number, so the version before it is served
again), forces a reload, and records the refusal (agent/refusals.py): the same bytes are not
published again until they change in the bucket.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3

from agent import dirswap
from agent.configsync import ConfigSync
from agent.localstate import LocalState, VersionState
from agent.ovmsclient import OvmsClient
from agent.pending import Signature
from agent.refusals import Refusals, RefusedBy

log = logging.getLogger(__name__)
CHECK_EVERY_SECONDS = 0.5
GIVE_UP_SECONDS = 120.0  # OVMS never reports the version (a policy leaves it out): keep it


@dataclass
class Held:
    """A published version OVMS has not confirmed yet, and what it replaced."""

    listing: Signature
    previous: VersionState | None  # None: a new version number
    previous_dir: Path | None  # the replaced directory, hidden, until OVMS confirms
    since: float


@dataclass(frozen=True)
class LoadStatus:
    state: str
    error_code: str
    error_message: str

    def failed(self) -> bool:
        if self.state == "AVAILABLE":
            return False
        return self.state == "LOADING_FAILED" or self.error_code not in ("OK", "")


class Rollback:
    def __init__(self, ovms: OvmsClient, state: LocalState, refusals: Refusals, config: ConfigSync) -> None:
        self.ovms = ovms
        self.state = state
        self.refusals = refusals
        self.config = config
        self.held: dict[tuple[str, int], Held] = {}
        self._next_check = 0.0

    def publish(self, model: str, version: int, staging: Path, target: Path, listing: Signature) -> None:
        """Put ``staging`` in place like dirswap.publish, keeping what it replaces."""
        previous_dir = dirswap.publish_keeping(staging, target)
        previous = self.state.version(model, version)
        earlier = self.held.pop((model, version), None)
        if earlier is not None:  # replaced again before OVMS confirmed: fall back to what it had
            _drop(previous_dir)
            previous_dir, previous = earlier.previous_dir, earlier.previous
        self.held[(model, version)] = Held(listing, previous, previous_dir, time.monotonic())

    def poll(self) -> None:
        """One step of the agent's loop: compare what is held with what OVMS reports."""
        if not self.held or time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + CHECK_EVERY_SECONDS
        reported = self._load_status()
        if reported is None:
            return
        refused = False
        for key, held in list(self.held.items()):
            status = reported.get(key)
            if status is not None and status.failed():
                self._roll_back(key, held, status)
                refused = True
            elif status is not None and status.state == "AVAILABLE":
                self.held.pop(key)
                _drop(held.previous_dir)
                self.config.status.version(*key, "published", ovms_state=status.state)
            elif self._given_up(key, held):
                self.held.pop(key)
                _drop(held.previous_dir)
        if refused:
            self.config.apply(force_reload=True)

    def _given_up(self, key: tuple[str, int], held: Held) -> bool:
        if time.monotonic() - held.since < GIVE_UP_SECONDS:
            return False
        log.warning("model %s:%s: OVMS never reported it; keeping it without a rollback", *key)
        return True

    def _roll_back(self, key: tuple[str, int], held: Held, status: LoadStatus) -> None:
        model, version = key
        self.held.pop(key)
        target = self.config.config.sync.models_path / model / str(version)
        if held.previous_dir is not None and held.previous is not None:
            dirswap.publish(held.previous_dir, target)  # the old directory back, atomically
            self.state.set_version(model, version, held.previous.files)
            restored = "its previous content is back"
        else:
            if target.is_dir() and not target.is_symlink():
                _drop(dirswap.retire(target))
            _drop(held.previous_dir)  # a directory the state did not know: not ours to restore
            self.state.drop_version(model, version)
            restored = "removed, the version before it is served again"
        self.state.save()
        reason = f"OVMS could not load it ({status.state}, {status.error_code}): {status.error_message}"
        self.refusals.add(model, version, held.listing, RefusedBy.OVMS, f"{reason}; {restored}")

    def _load_status(self) -> dict[tuple[str, int], LoadStatus] | None:
        try:
            response = self.ovms.http.request("GET", f"{self.ovms.base}/v1/config")
            document: dict[str, Any] = json.loads(response.data) if response.status == 200 else {}
            return {
                (str(model), int(entry["version"])): _status_of(entry)
                for model, info in document.items()
                for entry in info.get("model_version_status", [])
            }
        except (urllib3.exceptions.HTTPError, ValueError, AttributeError, KeyError, TypeError) as exc:
            log.warning("cannot read OVMS model status (rollback check): %s", type(exc).__name__)
            return None


def _status_of(entry: dict[str, Any]) -> LoadStatus:
    status = entry.get("status") or {}
    return LoadStatus(
        str(entry.get("state", "")), str(status.get("error_code", "")), str(status.get("error_message", ""))
    )


def _drop(path: Path | None) -> None:
    if path is not None:
        shutil.rmtree(path, ignore_errors=True)
