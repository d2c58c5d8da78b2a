"""The agent's loop: intents in, reconcile on a timer, versions published, config swapped.

One thread makes every decision (so there are no locks around state); watchdog only wakes it,
downloads run in a bounded pool, and the status heartbeat has a thread of its own.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from agent import metrics, sidecarlog, volume
from agent.configsync import ConfigSync
from agent.eventstream import EventReader
from agent.inbox import Inbox
from agent.inflight import InFlight
from agent.localstate import LocalState
from agent.loophealth import LoopHealth
from agent.pending import Pending
from agent.preflight import Preflight
from agent.reconcile import Disk, Reconciler, StorageHealth
from agent.refusals import Refusals
from agent.retry import Backoff
from agent.rollback import Rollback
from agent.stager import Stager
from agent.status import StatusReporter
from agent.storage import Bucket, Cancelled
from agent.versionpolicy import VersionPolicy
from agent.versionsync import VersionSync
from agent.watcher import IntentWatcher
from modelsync.config import Config
from modelsync.errors import IntentError, ModelsyncError, ObjectChangedError, StorageError
from modelsync.intents import ObjectIntent, ResyncIntent
from modelsync.results import ResultBox, ResyncOutcome, VersionKey, VersionOutcome

log = logging.getLogger(__name__)
DEBOUNCE_SECONDS = 0.02  # lets a burst of events for one version land before the listing


class Agent:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.bucket = Bucket(config.minio, pool_size=config.sync.download_concurrency + 2)
        volume.prepare_directories(config)
        self.state = LocalState.load(config.state_dir / "state.json")
        self.status = StatusReporter(config.status_path, config.sync.heartbeat_seconds)
        self.inbox = Inbox(config)
        self.results = ResultBox(config.results_dir)
        self.inflight = InFlight(config.state_dir / "inflight.json")
        self.policy = VersionPolicy(config.ovms)
        stager = Stager(
            self.bucket,
            config.sync.models_path,
            config.sync.download_concurrency,
            self.stop,
            config.sync.progress_seconds,
            config.sync.min_free_bytes,
        )
        self.versions = VersionSync(
            self.bucket,
            self.state,
            stager,
            self.status,
            config.sync.models_path,
            config.ovms.model_name,
            config.sync.settle_seconds,
            self.inflight,
            self.policy,
        )
        sync = config.sync
        settings = f"{sync.preflight}/{sync.preflight_timeout_seconds:g}s/{sync.preflight_memory_mb}MiB"
        self.versions.refusals = Refusals(config.state_dir / "refused.json", self.status, settings)
        self.versions.preflight = Preflight.configured(
            sync.preflight, sync.preflight_timeout_seconds, sync.preflight_memory_mb
        )
        self.ovms_config = ConfigSync(config, self.state, self.status)
        if self.ovms_config.ovms is not None:
            self.versions.rollback = Rollback(
                self.ovms_config.ovms, self.state, self.versions.refusals, self.ovms_config
            )
        self.pending: dict[tuple[str, int], Pending] = {}
        self.seen: set[str] = set()
        self.loop = LoopHealth(self.status)
        self.storage = StorageHealth(config.minio, self.status)
        self.reconciler = Reconciler(
            config,
            self.bucket,
            Disk(self.state, self.inflight, self.versions),
            self.policy,
            self.status,
            self.storage,
            self.pending,
        )
        # Fleet mode: the event topic's reader asks for a full reconcile when it cannot vouch
        # for what came before its position (a new replica, an offset the topic dropped).
        self.reconcile_requested = threading.Event()
        kafka = config.kafka_events
        self.events = EventReader(config, kafka, self.status, self.request_reconcile) if kafka else None

    # -- life cycle -----------------------------------------------------------------------
    def run(self) -> int:
        volume.clean_leftovers(self.config, self.state)
        self.status.start()
        metrics.serve(self.config.sync.metrics_port)
        watcher = IntentWatcher(self.config.intents_dir, self.wake)
        watcher.start()
        if self.events is not None:
            self.events.start()
        log.info(
            "agent started: bucket=%s models_path=%s config=%s",
            self.config.minio.bucket,
            self.config.sync.models_path,
            self.config.ovms.config_path,
        )
        sidecarlog.starting(self.config.sync.interval)
        try:
            # Forced: a version swapped in place just before a crash still needs OVMS to reload.
            self.ovms_config.apply(force_reload=True)
            while not self.stop.is_set():
                self._guarded_step()
                self.wake.wait(self._sleep_seconds())
                self.wake.clear()
        finally:
            if self.events is not None:
                self.events.stop()
            watcher.stop()
            self.status.stop()
            log.info("agent stopped")
        return 0

    def request_stop(self) -> None:
        self.stop.set()
        self.wake.set()

    def request_reconcile(self) -> None:
        """Any thread: a full reconcile at the loop's next step."""
        self.reconcile_requested.set()
        self.wake.set()

    def _guarded_step(self) -> None:
        """One step; whatever a part raises, the others run and it backs off on its own."""
        if not self.step():
            self.ovms_config.mark_owed()  # the disk may be ahead of config.json

    def step(self) -> bool:
        """Every part of the loop, each guarded (agent/loophealth.py); False when one failed."""
        parts = (
            ("intake", self._ingest),
            ("move_failed", self.inbox.retry_moves),
            ("state", self._save_state),
            ("config", self._apply_config),
            ("reconcile", self._reconcile_if_due),
            ("publish", self._process_due),
            ("rollback", self._check_rollback),
        )
        ok = [self.loop.run(name, part) for name, part in parts]  # a list: every part runs
        self.status.update(pending_intents=len(self.seen))
        metrics.INTENTS_PENDING.set(len(self.seen))
        return all(ok)

    def _apply_config(self) -> None:
        if self.ovms_config.due():
            self.ovms_config.apply(force_reload=False)

    def _check_rollback(self) -> None:
        if self.versions.rollback is not None:
            self.versions.rollback.poll()

    def _reconcile_if_due(self) -> None:
        if self.reconcile_requested.is_set():
            self.reconcile_requested.clear()
            self.reconciler.next_reconcile = 0.0
        if time.monotonic() >= self.reconciler.next_reconcile:
            self.reconcile()

    def _save_state(self) -> None:
        """Retry a state save that failed (disk full, a directory in the way); said once."""
        if not self.state.unsaved:
            return
        try:
            self.state.save()
        except OSError as exc:
            message = f"cannot save {self.state.path}: {exc.strerror}"
            if message != self.status.last_error_message():
                log.error("%s", message)
                self.status.error(message)

    def _sleep_seconds(self) -> float:
        # A part backing off after a failure is not due before its retry time (no busy loop).
        publish = max(
            min((p.due for p in self.pending.values()), default=math.inf), self.loop.retry_at("publish")
        )
        due = min(publish, max(self.reconciler.next_reconcile, self.loop.retry_at("reconcile")))
        if self.storage.retry_at > time.monotonic():
            due = max(due, self.storage.retry_at)
        return max(0.0, min(due - time.monotonic(), self.config.sync.heartbeat_seconds))

    # -- intents --------------------------------------------------------------------------
    def _ingest(self) -> None:
        now = time.monotonic()
        for intent_id in self.inbox.names():
            if intent_id in self.seen:
                continue
            try:
                self._take(intent_id, now)
            except IntentError as exc:
                self._refuse(intent_id, str(exc))
            except Exception as exc:  # whatever one intent does, the ones behind it go on
                log.debug("traceback of the failed intent", exc_info=True)
                self._refuse(intent_id, f"cannot be handled: {type(exc).__name__}: {exc}")

    def _refuse(self, intent_id: str, reason: str) -> None:
        self.seen.discard(intent_id)
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
        self.seen.add(intent_id)
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

    def _commit(self, intent_ids: set[str] | list[str]) -> None:
        for intent_id in intent_ids:
            self.inbox.done(intent_id)
            self.seen.discard(intent_id)

    def _resync(self, intent: ResyncIntent) -> None:
        model, version = intent.get("model"), intent.get("version")
        log.info("resync requested (%s): model=%s version=%s", intent["id"], model or "*", version or "*")
        outcome = ResyncOutcome(intent["id"], model, version)
        try:
            in_scope = self.reconcile(model=model, version=version, forced=True)
            queued = {k for k in in_scope if k in self.pending}
            results = self._process_due(only=queued)
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

    def reconcile(
        self, model: str | None = None, version: int | None = None, forced: bool = False
    ) -> set[VersionKey]:
        """Compare (part of) the bucket with the disk; queue what differs (agent/reconcile.py)."""
        return self.reconciler.reconcile(model, version, forced)

    # -- publishing -----------------------------------------------------------------------
    def _process_due(self, only: set[VersionKey] | None = None) -> dict[VersionKey, VersionOutcome]:
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
        published = set()
        for pending in done:
            self.pending.pop(pending.key, None)
            if outcomes[pending.key] is VersionOutcome.REFUSED:
                self._fail_refused(pending)
                continue
            self._commit(pending.intents)
            if outcomes[pending.key] is VersionOutcome.PUBLISHED:
                published.add(pending.model)
                log.info(
                    "Successfully synced model %s:%s",
                    pending.model,
                    pending.version,
                    extra={"model": pending.model, "version": pending.version, "event": "synced"},
                )
        self._apply_policies(published)
        return outcomes

    def _apply_policies(self, published: set[str]) -> None:
        """A new version may push an older one out of its model's policy: look again at once,
        so the older one is removed now that the new one is in place (not at the next reconcile)."""
        for model in sorted(m for m in published if self.policy.restricts(m)):
            self.reconcile(model=model)

    def _fail_refused(self, pending: Pending) -> None:
        """A refused version's intents go to failed/ with the reason (agent/refusals.py)."""
        refusal = self.versions.refusals.entries.get(pending.key) if self.versions.refusals else None
        reason = f"refused by {refusal.by.value}: {refusal.reason}" if refusal else "refused"
        for intent_id in pending.intents:
            self.inbox.fail(intent_id, reason)
            self.seen.discard(intent_id)

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
        if pending.changes > self.config.sync.max_attempts:  # it never holds still: a failure
            return self._failed(pending, f"{message} ({pending.changes} times in a row)")
        delay = Backoff(failures=pending.changes - 1).next_delay()
        pending.retry_at(time.monotonic() + delay)
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
        if pending.attempts >= self.config.sync.max_attempts:
            log.error(
                "model %s:%s failed %d times, giving up: %s",
                pending.model,
                pending.version,
                pending.attempts,
                message,
            )
            for intent_id in pending.intents:
                self.inbox.fail(intent_id, message)
                self.seen.discard(intent_id)
            pending.intents.clear()
            metrics.SYNCS.labels(outcome=VersionOutcome.FAILED).inc()
            return VersionOutcome.FAILED
        delay = Backoff(failures=pending.attempts - 1).next_delay()
        pending.retry_at(time.monotonic() + delay)
        log.error(
            "model %s:%s sync failed (attempt %d), retrying in %.1fs: %s",
            pending.model,
            pending.version,
            pending.attempts,
            delay,
            message,
        )
        return VersionOutcome.RETRYING
