"""Reconcile: compare (part of) the bucket's listing with the disk and queue what differs.

Also whether the bucket answers at all (StorageHealth): a failed listing or download backs every
bucket request off together, so the loop does not hammer a bucket that is down.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

from agent import metrics, sidecarlog
from agent.inflight import InFlight
from agent.localstate import LocalState
from agent.pending import Listing, Pending
from agent.retry import Backoff
from agent.status import StatusReporter
from agent.storage import Bucket, RemoteObject
from agent.versionpolicy import VersionPolicy
from agent.versionsync import VersionSync, group_listing
from modelsync import keys
from modelsync.config import Config, MinioConfig
from modelsync.errors import StorageError
from modelsync.results import VersionKey

# The records keep the logger name they had before the agent's loop was split in modules.
log = logging.getLogger("agent.service")


@dataclass(frozen=True)
class Scope:
    """What a reconcile compares: the whole bucket, one model, or one version of a model."""

    model: str | None = None
    version: int | None = None

    @property
    def whole(self) -> bool:
        return self.model is None

    def contains(self, key: VersionKey) -> bool:
        return (self.model is None or key[0] == self.model) and self.version in (None, key[1])


class StorageHealth:
    """Whether the bucket answers; after a failure, when to ask it again (backing off)."""

    def __init__(self, minio: MinioConfig, status: StatusReporter) -> None:
        self.minio = minio
        self.status = status
        self.backoff = Backoff()
        self.retry_at = 0.0
        self.failing: bool | None = None  # None: not asked yet

    def down(self, exc: StorageError) -> None:
        delay = self.backoff.next_delay()
        self.retry_at = time.monotonic() + delay
        self.status.storage(False, str(exc))
        metrics.FAILURES.labels(reason="storage").inc()
        self.status.error(str(exc))
        sidecarlog.failed_to_connect(f"{exc}; retrying in {delay:.1f}s")
        self.failing = True

    def up(self) -> None:
        if self.backoff.failures:
            log.info("bucket %s is reachable again", self.minio.bucket)
        if self.failing is not False:  # the first answer, and the first after an outage
            sidecarlog.connected(self.minio.url)
        self.failing = False
        self.backoff.reset()
        self.retry_at = 0.0
        self.status.storage(True)


@dataclass(frozen=True)
class Disk:
    """What the agent knows of its own versions on disk."""

    state: LocalState
    inflight: InFlight
    versions: VersionSync


class Reconciler:
    """Lists the bucket (whole, a model, or a version) and queues every version that differs."""

    def __init__(
        self,
        config: Config,
        bucket: Bucket,
        disk: Disk,
        policy: VersionPolicy,
        status: StatusReporter,
        storage: StorageHealth,
        pending: dict[VersionKey, Pending],
    ) -> None:
        self.config = config
        self.bucket = bucket
        self.disk = disk
        self.policy = policy
        self.status = status
        self.storage = storage
        self.pending = pending
        self.next_reconcile = 0.0
        self.bucket_was_empty = False

    def reconcile(
        self, model: str | None = None, version: int | None = None, forced: bool = False
    ) -> set[VersionKey]:
        """Compare (part of) the bucket with the disk; queue every version that differs.

        Returns every version in scope (bucket or disk), queued or already in sync.
        """
        scope = Scope(model, version)
        single = self.config.ovms.model_name
        prefix = self._listing_prefix(model, version)
        started = time.monotonic()
        objects = self._list_scope(prefix, forced)
        if objects is None:
            return set()
        kept = self.policy.keep(group_listing(objects, single))
        remote = {k: v for k, v in kept.items() if scope.contains(k)}
        if scope.whole:
            self._report_empty_bucket(not remote)
            sidecarlog.discovered(len(remote))
        in_scope = set(remote) | self._local_versions(scope)
        queued = self._queue_differing(in_scope, remote, forced)
        if scope.whole:
            self._full_reconcile_done(objects, remote, len(queued), started)
        log.debug("reconcile of %r: %d objects, %d version(s) queued", prefix, len(objects), len(queued))
        return in_scope

    def _list_scope(self, prefix: str, forced: bool) -> list[RemoteObject] | None:
        """The bucket under ``prefix``; None when it cannot be listed (a resync raises)."""
        try:
            objects = list(self.bucket.list(prefix))
        except StorageError as exc:
            self.storage.down(exc)
            if forced:
                raise
            self.next_reconcile = self.storage.retry_at
            return None
        self.storage.up()
        return objects

    def _local_versions(self, scope: Scope) -> set[VersionKey]:
        """The versions in scope the agent owns on disk (a resync of one version: that one too)."""
        local = {k for k in self.disk.state.versions() if scope.contains(k)}
        # Renamed into place just before a crash, before the state recorded them: ours.
        local |= {k for k in self.disk.inflight.versions() if scope.contains(k)}
        if scope.model is not None and scope.version is not None and self.disk.state.manages(scope.model):
            local.add((scope.model, scope.version))
        return local

    def _queue_differing(
        self, in_scope: set[VersionKey], remote: dict[VersionKey, Listing], forced: bool
    ) -> set[VersionKey]:
        queued = set()
        for key in sorted(in_scope):
            listing = remote.get(key, {})
            if self.disk.versions.in_step(*key, listing):
                self.disk.inflight.discard(*key)  # in step after all
                continue
            pending = self.pending.setdefault(key, Pending(*key, last_change=-math.inf))
            pending.differs(listing, time.monotonic(), forced)
            queued.add(key)
        return queued

    def _full_reconcile_done(
        self, objects: list[RemoteObject], remote: dict[VersionKey, Listing], queued: int, started: float
    ) -> None:
        # Outside the layout (<model_name>/... too, when ovms.model_name is set).
        ignored = len(objects) - sum(len(listing) for listing in remote.values())
        metrics.IGNORED_OBJECTS.set(ignored)
        self.disk.versions.report_shadowed(objects)
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
                "queued": queued,
            }
        )

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
