"""Intake: the webhook's intents become pending versions (or a resync, run at once).

An intent that cannot be read or handled goes to failed/ with the reason; the ones behind it go on.
"""

from __future__ import annotations

import logging
import time

from agent.intentbook import IntentBook
from agent.localstate import LocalState
from agent.pending import Pending
from agent.publish import Publisher
from agent.reconcile import Reconciler
from agent.status import StatusReporter
from modelsync.errors import IntentError, ModelsyncError
from modelsync.intents import ObjectIntent, ResyncIntent
from modelsync.results import ResultBox, ResyncOutcome, VersionKey, VersionOutcome

# The records keep the logger name they had before the agent's loop was split in modules.
log = logging.getLogger("agent.service")
DEBOUNCE_SECONDS = 0.02  # lets a burst of events for one version land before the listing


class Intake:
    """Reads new intents into ``pending``; answers those with nothing left to do."""

    def __init__(
        self,
        book: IntentBook,
        pending: dict[VersionKey, Pending],
        state: LocalState,
        reconciler: Reconciler,
        publisher: Publisher,
        results: ResultBox,
        status: StatusReporter,
    ) -> None:
        self.book = book
        self.inbox = book.inbox
        self.pending = pending
        self.state = state
        self.reconciler = reconciler
        self.publisher = publisher
        self.results = results
        self.status = status

    def ingest(self) -> None:
        now = time.monotonic()
        for intent_id in self.inbox.names():
            if intent_id in self.book.seen:
                continue
            try:
                self._take(intent_id, now)
            except IntentError as exc:
                self._refuse(intent_id, str(exc))
            except Exception as exc:  # whatever one intent does, the ones behind it go on
                log.debug("traceback of the failed intent", exc_info=True)
                self._refuse(intent_id, f"cannot be handled: {type(exc).__name__}: {exc}")

    def _refuse(self, intent_id: str, reason: str) -> None:
        self.book.seen.discard(intent_id)
        for pending in self.pending.values():
            pending.intents.discard(intent_id)
        self.inbox.fail(intent_id, reason)

    def _take(self, intent_id: str, now: float) -> None:
        intent = self.inbox.read(intent_id)
        if intent["kind"] == "resync":
            try:
                self._resync(intent)
            except Exception as exc:
                raise IntentError(f"resync failed: {type(exc).__name__}: {exc}") from exc
            return
        key = (intent["model"], intent["version"])
        if key not in self.pending and self._already_applied(intent):
            self.inbox.done(intent_id)
            return
        self.book.seen.add(intent_id)
        self.pending.setdefault(key, Pending(*key, last_change=now)).event(intent_id, now, DEBOUNCE_SECONDS)

    def _already_applied(self, intent: ObjectIntent) -> bool:
        """A duplicate or stale event about something the disk already reflects."""
        current = self.state.version(intent["model"], intent["version"])
        if current is None:
            return False
        known = current.files.get(intent["path"])
        if intent["action"] == "delete":
            return known is None
        return known is not None and known.etag == intent.get("etag") and known.size == intent.get("size")

    def _resync(self, intent: ResyncIntent) -> None:
        model, version = intent.get("model"), intent.get("version")
        log.info("resync requested (%s): model=%s version=%s", intent["id"], model or "*", version or "*")
        outcome = ResyncOutcome(intent["id"], model, version)
        try:
            in_scope = self.reconciler.reconcile(model=model, version=version, forced=True)
            queued = {k for k in in_scope if k in self.pending}
            results = self.publisher.process_due(only=queued)
            versions = dict.fromkeys(in_scope, VersionOutcome.IN_SYNC)
            # Queued but not reached: the bucket went away, or the agent is stopping.
            versions.update(dict.fromkeys(queued, VersionOutcome.NOT_SYNCED))
            versions.update(results)
            outcome.record(versions)
        except ModelsyncError as exc:
            outcome.error = str(exc)
        self.results.write(outcome)
        # In fleet mode each replica resyncs under the publisher's id: `agent status` shows it.
        self.status.update(
            last_resync={"id": intent["id"], "status": outcome.status.value, "at": time.time()}
        )
        self.inbox.done(intent["id"])
