"""The agent's loop: intents in, reconcile on a timer, versions published, config swapped.

One thread makes every decision (so there are no locks around state); watchdog only wakes it,
downloads run in a bounded pool, and the status heartbeat has a thread of its own.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from agent import metrics, sidecarlog, volume
from agent.configsync import ConfigSync
from agent.eventstream import EventReader
from agent.inbox import Inbox
from agent.inflight import InFlight
from agent.localstate import LocalState
from agent.loophealth import LoopHealth
from agent.pending import Pending, signature
from agent.preflight import Preflight
from agent.refusals import Refusals
from agent.retry import Backoff
from agent.rollback import Rollback
from agent.stager import Stager
from agent.status import StatusReporter
from agent.storage import Bucket, Cancelled
from agent.versionpolicy import VersionPolicy
from agent.versionsync import VersionSync, group_listing
from agent.watcher import IntentWatcher
from modelsync import keys
from modelsync.config import Config
from modelsync.errors import IntentError, ModelsyncError, ObjectChangedError, StorageError
from modelsync.results import ResultBox

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
            InFlight(config.state_dir / "inflight.json"),
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
        self.storage_backoff = Backoff()
        self.loop = LoopHealth(self.status)
        self.storage_retry_at = 0.0
        self.next_reconcile = 0.0
        self.bucket_was_empty = False
        self.bucket_failing: bool | None = None  # None: not asked yet
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
            self.ovms_config.owed = True  # the disk may be ahead of config.json

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
            self.next_reconcile = 0.0
        if time.monotonic() >= self.next_reconcile:
            self.reconcile()

    def _save_state(self) -> None:
        """Retry a state save that failed (disk full, a directory in the way); said once."""
        if not self.state.unsaved:
            return
        try:
            self.state.save()
        except OSError as exc:
            message = f"cannot save {self.state.path}: {exc.strerror}"
            if message != (self.status.document.get("last_error") or {}).get("message"):
                log.error("%s", message)
                self.status.error(message)

    def _sleep_seconds(self) -> float:
        # A part backing off after a failure is not due before its retry time (no busy loop).
        publish = max(
            min((p.due for p in self.pending.values()), default=math.inf), self.loop.retry_at("publish")
        )
        due = min(publish, max(self.next_reconcile, self.loop.retry_at("reconcile")))
        if self.storage_retry_at > time.monotonic():
            due = max(due, self.storage_retry_at)
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
        pending = self.pending.setdefault(key, Pending(*key, last_change=now))
        pending.listing = None  # a reconcile's listing predates this event
        pending.intents.add(intent_id)
        pending.last_change = max(pending.last_change, now)
        pending.due = min(pending.due, now + DEBOUNCE_SECONDS)

    def _already_applied(self, intent: dict[str, Any]) -> bool:
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

    def _resync(self, intent: dict[str, Any]) -> None:
        model, version = intent.get("model"), intent.get("version")
        log.info("resync requested (%s): model=%s version=%s", intent["id"], model or "*", version or "*")
        outcome: dict[str, Any] = {"id": intent["id"], "model": model, "version": version}
        try:
            in_scope = self.reconcile(model=model, version=version, forced=True)
            queued = {k for k in in_scope if k in self.pending}
            results = self._process_due(only=queued)
            versions = {f"{m}:{v}": "in_sync" for m, v in in_scope}
            # Queued but not reached: the bucket went away, or the agent is stopping.
            versions.update({f"{m}:{v}": "not_synced" for m, v in queued})
            versions.update(results)
            failed = sorted(
                k
                for k, v in versions.items()
                if v in ("not_synced", "failed", "retrying", "waiting", "refused")
            )
            outcome.update(status="failed" if failed else "applied", versions=versions)
            if failed:
                outcome["error"] = f"not synced: {', '.join(failed)}"
        except ModelsyncError as exc:
            outcome.update(status="failed", error=str(exc))
        self.results.write(intent["id"], outcome)
        # In fleet mode each replica resyncs under the publisher's id: `agent status` shows it.
        self.status.update(last_resync={"id": intent["id"], "status": outcome["status"], "at": time.time()})
        self.inbox.done(intent["id"])

    # -- reconcile ------------------------------------------------------------------------
    def reconcile(
        self, model: str | None = None, version: int | None = None, forced: bool = False
    ) -> set[tuple[str, int]]:
        """Compare (part of) the bucket with the disk; queue every version that differs.

        Returns every version in scope (bucket or disk), queued or already in sync.
        """
        single = self.config.ovms.model_name
        prefix = self._listing_prefix(model, version)
        started = time.monotonic()
        try:
            objects = list(self.bucket.list(prefix))
        except StorageError as exc:
            self._storage_down(exc)
            if forced:
                raise
            self.next_reconcile = self.storage_retry_at
            return set()
        self._storage_up()
        remote = self.policy.keep(group_listing(objects, single))
        if model is None:
            self._report_empty_bucket(not remote)
            sidecarlog.discovered(len(remote))
        if model is not None:
            remote = {k: v for k, v in remote.items() if k[0] == model and version in (None, k[1])}
        local = {
            (m, v)
            for m, vs in self.state.models.items()
            for v in vs
            if (model is None or m == model) and version in (None, v)
        }
        # Renamed into place just before a crash, before the state recorded them: ours.
        inflight = self.versions.inflight
        local |= {k for k in inflight.entries if (model is None or k[0] == model) and version in (None, k[1])}
        if model is not None and version is not None and model in self.state.models:
            local.add((model, version))
        queued = set()
        in_scope = set(remote) | local
        for key in sorted(in_scope):
            listing = remote.get(key, {})
            current = self.state.version(*key)
            target = self.config.sync.models_path / key[0] / str(key[1])
            if current is not None and current.signature() == signature(listing) and target.is_dir():
                inflight.discard(*key)  # in step after all
                continue
            pending = self.pending.setdefault(key, Pending(*key, last_change=-math.inf))
            pending.listing, pending.due = listing, time.monotonic()
            pending.forced = pending.forced or forced
            queued.add(key)
        if model is None:
            # Outside the layout (<model_name>/... too, when ovms.model_name is set).
            ignored = len(objects) - sum(len(listing) for listing in remote.values())
            metrics.IGNORED_OBJECTS.set(ignored)
            self.versions.report_shadowed(objects)
            self.next_reconcile = time.monotonic() + self.config.sync.interval
            metrics.LAST_RECONCILE.set_to_current_time()
            metrics.RECONCILE_SECONDS.observe(time.monotonic() - started)
            self.status.update(
                last_reconcile={
                    "at": time.time(),
                    "ok": True,
                    "objects": len(objects),
                    "ignored": ignored,
                    "duration_seconds": round(time.monotonic() - started, 3),
                    "queued": len(queued),
                }
            )
        log.debug("reconcile of %r: %d objects, %d version(s) queued", prefix, len(objects), len(queued))
        return in_scope

    def _listing_prefix(self, model: str | None, version: int | None) -> str:
        single = self.config.ovms.model_name
        if model is None:
            return ""
        # A policy chooses among every version of the model: list them all to apply it.
        if version is None or self.policy.restricts(model):
            return keys.model_prefix(model, single)
        return keys.version_prefix(model, version, single)

    def _report_empty_bucket(self, empty: bool) -> None:
        if empty and not self.bucket_was_empty:
            single = self.config.ovms.model_name
            layout = f"<version>/<file> for model {single}, or " if single else ""
            log.warning(
                "No models found in MinIO bucket %s: expected keys like %s<model>/<version>/<file>",
                self.config.minio.bucket,
                layout,
            )
        self.bucket_was_empty = empty

    def _storage_down(self, exc: StorageError) -> None:
        delay = self.storage_backoff.next_delay()
        self.storage_retry_at = time.monotonic() + delay
        self.status.storage(False, str(exc))
        metrics.FAILURES.labels(reason="storage").inc()
        self.status.error(str(exc))
        sidecarlog.failed_to_connect(f"{exc}; retrying in {delay:.1f}s")
        self.bucket_failing = True

    def _storage_up(self) -> None:
        if self.storage_backoff.failures:
            log.info("bucket %s is reachable again", self.config.minio.bucket)
        if self.bucket_failing is not False:  # the first answer, and the first after an outage
            sidecarlog.connected(self.config.minio.url)
        self.bucket_failing = False
        self.storage_backoff.reset()
        self.storage_retry_at = 0.0
        self.status.storage(True)

    # -- publishing -----------------------------------------------------------------------
    def _process_due(self, only: set[tuple[str, int]] | None = None) -> dict[str, str]:
        now = time.monotonic()
        if now < self.storage_retry_at:
            return {}
        ready = [
            p for k, p in sorted(self.pending.items()) if (k in only if only is not None else p.due <= now)
        ]
        ready.sort(key=lambda p: p.listing == {})  # removals last: a new version is in place first
        outcomes: dict[str, str] = {}
        done: list[Pending] = []
        for pending in ready:
            if self.stop.is_set():
                break
            outcome = self._run_one(pending)
            if outcome is None:
                break  # storage is down: everything else waits too
            outcomes[f"{pending.model}:{pending.version}"] = outcome
            if outcome not in ("waiting", "retrying"):
                done.append(pending)
        if any(outcomes.get(f"{p.model}:{p.version}") in ("published", "removed") for p in done):
            self.ovms_config.apply(force_reload=bool(self.versions.replaced))
            self.versions.replaced.clear()
            self.versions.clean_retired()
        published = set()
        for pending in done:
            self.pending.pop(pending.key, None)
            if outcomes[f"{pending.model}:{pending.version}"] == "refused":
                self._fail_refused(pending)
                continue
            self._commit(pending.intents)
            if outcomes[f"{pending.model}:{pending.version}"] == "published":
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

    def _run_one(self, pending: Pending) -> str | None:
        try:
            outcome = self.versions.run(pending)
            self._storage_up()
            return outcome
        except StorageError as exc:
            self._storage_down(exc)
            return None
        except ObjectChangedError as exc:
            self._storage_up()  # the bucket answered: an overwrite raced the download
            return self._changed(pending, str(exc))
        except Cancelled:
            return None
        except (ModelsyncError, OSError) as exc:
            return self._failed(pending, str(exc))
        except Exception as exc:  # one odd version must not starve the ones after it
            return self._failed(pending, f"{type(exc).__name__}: {exc}")

    def _changed(self, pending: Pending, message: str) -> str:
        """List this version again and retry it soon; the other versions do not wait."""
        pending.changes += 1
        metrics.FAILURES.labels(reason="object_changed").inc()
        if pending.changes > self.config.sync.max_attempts:  # it never holds still: a failure
            return self._failed(pending, f"{message} ({pending.changes} times in a row)")
        pending.listing = None
        delay = Backoff(failures=pending.changes - 1).next_delay()
        pending.due = time.monotonic() + delay
        log.warning(
            "model %s:%s: %s; listing the version again in %.1fs",
            pending.model,
            pending.version,
            message,
            delay,
            extra={"model": pending.model, "version": pending.version, "event": "object_changed"},
        )
        return "retrying"

    def _failed(self, pending: Pending, message: str) -> str:
        pending.attempts += 1
        self.ovms_config.owed = True  # the disk may be ahead of config.json now
        metrics.FAILURES.labels(reason="publish").inc()
        self.status.error(message, pending.model, pending.version)
        self.status.version(pending.model, pending.version, "failed", error=message)
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
            metrics.SYNCS.labels(outcome="failed").inc()
            return "failed"
        delay = Backoff(failures=pending.attempts - 1).next_delay()
        pending.due = time.monotonic() + delay
        log.error(
            "model %s:%s sync failed (attempt %d), retrying in %.1fs: %s",
            pending.model,
            pending.version,
            pending.attempts,
            delay,
            message,
        )
        return "retrying"
