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
from agent.intake import Intake
from agent.intentbook import IntentBook
from agent.localstate import LocalState
from agent.loophealth import LoopHealth
from agent.pending import Pending
from agent.preflight import Preflight
from agent.publish import Publisher
from agent.reconcile import Disk, Reconciler, StorageHealth
from agent.refusals import Refusals
from agent.rollback import Rollback
from agent.stager import Stager
from agent.status import StatusReporter
from agent.storage import Bucket
from agent.versionpolicy import VersionPolicy
from agent.versionsync import VersionSync
from agent.watcher import IntentWatcher
from modelsync.config import Config
from modelsync.results import ResultBox, VersionKey

log = logging.getLogger(__name__)


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
        self.versions, refusals = self._version_sync()
        self.ovms_config = ConfigSync(config, self.state, self.status)
        if self.ovms_config.ovms is not None:
            self.versions.rollback = Rollback(self.ovms_config.ovms, self.state, refusals, self.ovms_config)
        self.pending: dict[tuple[str, int], Pending] = {}
        self.intents = IntentBook(self.inbox)
        self.loop = LoopHealth(self.status)
        self.storage = StorageHealth(config.minio, self.status)
        self.reconciler, self.publisher, self.intake = self._loop_parts()
        # Fleet mode: the event topic's reader asks for a full reconcile when it cannot vouch
        # for what came before its position (a new replica, an offset the topic dropped).
        self.reconcile_requested = threading.Event()
        kafka = config.kafka_events
        self.events = EventReader(config, kafka, self.status, self.request_reconcile) if kafka else None

    def _version_sync(self) -> tuple[VersionSync, Refusals]:
        """The publisher of single versions, with its refusals and preflight."""
        config = self.config
        stager = Stager(
            self.bucket,
            config.sync.models_path,
            config.sync.download_concurrency,
            self.stop,
            config.sync.progress_seconds,
            config.sync.min_free_bytes,
        )
        versions = VersionSync(
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
        refusals = Refusals(config.state_dir / "refused.json", self.status, settings)
        versions.refusals = refusals
        versions.preflight = Preflight.configured(
            sync.preflight, sync.preflight_timeout_seconds, sync.preflight_memory_mb
        )
        return versions, refusals

    def _loop_parts(self) -> tuple[Reconciler, Publisher, Intake]:
        """The loop's parts, sharing the pending versions, the intents and the bucket's health."""
        reconciler = Reconciler(
            self.config,
            self.bucket,
            Disk(self.state, self.inflight, self.versions),
            self.policy,
            self.status,
            self.storage,
            self.pending,
        )
        publisher = Publisher(
            self.config.sync,
            self.stop,
            self.pending,
            self.versions,
            self.ovms_config,
            self.intents,
            reconciler,
            self.policy,
            self.storage,
            self.status,
        )
        intake = Intake(
            self.intents, self.pending, self.state, reconciler, publisher, self.results, self.status
        )
        return reconciler, publisher, intake

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
            ("intake", self.intake.ingest),
            ("move_failed", self.inbox.retry_moves),
            ("state", self._save_state),
            ("config", self._apply_config),
            ("reconcile", self._reconcile_if_due),
            ("publish", self.publisher.process_due),
            ("rollback", self._check_rollback),
        )
        ok = [self.loop.run(name, part) for name, part in parts]  # a list: every part runs
        self.status.update(pending_intents=len(self.intents.seen))
        metrics.INTENTS_PENDING.set(len(self.intents.seen))
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

    def reconcile(
        self, model: str | None = None, version: int | None = None, forced: bool = False
    ) -> set[VersionKey]:
        """Compare (part of) the bucket with the disk; queue what differs (agent/reconcile.py)."""
        return self.reconciler.reconcile(model, version, forced)
