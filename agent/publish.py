"""Processing due versions: each one published (or removed), then config.json swapped once.

A version that fails backs off on its own; one the bucket changed under is listed again soon;
when the bucket is down every version waits (agent/reconcile.py's StorageHealth).
"""

from __future__ import annotations

import logging
import threading
import time

from agent import metrics
from agent.configsync import ConfigSync
from agent.intentbook import IntentBook
from agent.pending import Pending
from agent.reconcile import Reconciler, StorageHealth
from agent.retry import Backoff
from agent.status import StatusReporter
from agent.storage import Cancelled
from agent.versionpolicy import VersionPolicy
from agent.versionsync import VersionSync
from modelsync.config import SyncConfig
from modelsync.errors import ModelsyncError, ObjectChangedError, StorageError
from modelsync.results import VersionKey, VersionOutcome

# The records keep the logger name they had before the agent's loop was split in modules.
log = logging.getLogger("agent.service")


class Publisher:
    """Runs the pending versions that are due and answers their intents."""

    def __init__(
        self,
        sync: SyncConfig,
        stop: threading.Event,
        pending: dict[VersionKey, Pending],
        versions: VersionSync,
        ovms_config: ConfigSync,
        book: IntentBook,
        reconciler: Reconciler,
        policy: VersionPolicy,
        storage: StorageHealth,
        status: StatusReporter,
    ) -> None:
        self.sync = sync
        self.stop = stop
        self.pending = pending
        self.versions = versions
        self.ovms_config = ovms_config
        self.book = book
        self.reconciler = reconciler
        self.policy = policy
        self.storage = storage
        self.status = status

    def process_due(self, only: set[VersionKey] | None = None) -> dict[VersionKey, VersionOutcome]:
        now = time.monotonic()
        if now < self.storage.retry_at:
            return {}
        ready = [
            p for k, p in sorted(self.pending.items()) if (k in only if only is not None else p.due <= now)
        ]
        ready.sort(key=lambda p: p.listing == {})  # removals last: a new version is in place first
        outcomes: dict[VersionKey, VersionOutcome] = {}
        done: list[Pending] = []
        for pending in ready:
            if self.stop.is_set():
                break
            outcome = self._run_one(pending)
            if outcome is None:
                break  # storage is down: everything else waits too
            outcomes[pending.key] = outcome
            if outcome.finished:
                done.append(pending)
        if any(outcomes[p.key].moved for p in done):
            self.ovms_config.apply(force_reload=self.versions.replaced_in_place())
            self.versions.after_swap()
        self._apply_policies(self._answer(done, outcomes))
        return outcomes

    def _answer(self, done: list[Pending], outcomes: dict[VersionKey, VersionOutcome]) -> set[str]:
        """Forget the finished versions and answer their intents; the models published to."""
        published = set()
        for pending in done:
            self.pending.pop(pending.key, None)
            if outcomes[pending.key] is VersionOutcome.REFUSED:
                self._fail_refused(pending)
                continue
            self.book.commit(pending.intents)
            if outcomes[pending.key] is VersionOutcome.PUBLISHED:
                published.add(pending.model)
                log.info(
                    "Successfully synced model %s:%s",
                    pending.model,
                    pending.version,
                    extra={"model": pending.model, "version": pending.version, "event": "synced"},
                )
        return published

    def _apply_policies(self, published: set[str]) -> None:
        """A new version may push an older one out of its model's policy: look again at once,
        so the older one is removed now that the new one is in place (not at the next reconcile)."""
        for model in sorted(m for m in published if self.policy.restricts(m)):
            self.reconciler.reconcile(model=model)

    def _fail_refused(self, pending: Pending) -> None:
        """A refused version's intents go to failed/ with the reason (agent/refusals.py)."""
        refusal = self.versions.refusals.entries.get(pending.key) if self.versions.refusals else None
        reason = f"refused by {refusal.by.value}: {refusal.reason}" if refusal else "refused"
        for intent_id in pending.intents:
            self.book.fail(intent_id, reason)

    def _run_one(self, pending: Pending) -> VersionOutcome | None:
        try:
            outcome = self.versions.run(pending)
            self.storage.up()
            return outcome
        except StorageError as exc:
            self.storage.down(exc)
            return None
        except ObjectChangedError as exc:
            self.storage.up()  # the bucket answered: an overwrite raced the download
            return self._changed(pending, str(exc))
        except Cancelled:
            return None
        except (ModelsyncError, OSError) as exc:
            return self._failed(pending, str(exc))
        except Exception as exc:  # one odd version must not starve the ones after it
            return self._failed(pending, f"{type(exc).__name__}: {exc}")

    def _changed(self, pending: Pending, message: str) -> VersionOutcome:
        """List this version again and retry it soon; the other versions do not wait."""
        pending.changes += 1
        metrics.FAILURES.labels(reason="object_changed").inc()
        if pending.changes > self.sync.max_attempts:  # it never holds still: a failure
            return self._failed(pending, f"{message} ({pending.changes} times in a row)")
        delay = _back_off(pending, pending.changes)
        log.warning(
            "model %s:%s: %s; listing the version again in %.1fs",
            pending.model,
            pending.version,
            message,
            delay,
            extra={"model": pending.model, "version": pending.version, "event": "object_changed"},
        )
        return VersionOutcome.RETRYING

    def _failed(self, pending: Pending, message: str) -> VersionOutcome:
        pending.attempts += 1
        self.ovms_config.mark_owed()  # the disk may be ahead of config.json now
        metrics.FAILURES.labels(reason="publish").inc()
        self.status.error(message, pending.model, pending.version)
        self.status.version(pending.model, pending.version, VersionOutcome.FAILED, error=message)
        if pending.attempts >= self.sync.max_attempts:
            log.error(
                "model %s:%s failed %d times, giving up: %s",
                pending.model,
                pending.version,
                pending.attempts,
                message,
            )
            for intent_id in pending.intents:
                self.book.fail(intent_id, message)
            pending.intents.clear()
            metrics.SYNCS.labels(outcome=VersionOutcome.FAILED).inc()
            return VersionOutcome.FAILED
        delay = _back_off(pending, pending.attempts)
        log.error(
            "model %s:%s sync failed (attempt %d), retrying in %.1fs: %s",
            pending.model,
            pending.version,
            pending.attempts,
            delay,
            message,
        )
        return VersionOutcome.RETRYING


def _back_off(pending: Pending, failures: int) -> float:
    """Look at ``pending``'s version again after a delay that grows with ``failures`` in a row;
    returns the delay."""
    delay = Backoff(failures=failures - 1).next_delay()
    pending.retry_at(time.monotonic() + delay)
    return delay
