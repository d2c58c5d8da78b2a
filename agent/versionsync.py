"""One model version: compare the bucket with the disk, decide, stage, publish or remove."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import time
from pathlib import Path

from agent import dirswap, manifest, metrics, placement
from agent.inflight import InFlight
from agent.localstate import LocalState
from agent.pending import Listing, Pending, settled, signature
from agent.preflight import Preflight
from agent.refusals import Refusals, RefusedBy
from agent.rollback import Rollback
from agent.stager import Stager, model_dir_for
from agent.status import StatusReporter
from agent.storage import Bucket, Cancelled, RemoteObject, StopFlag
from agent.versionpolicy import VersionPolicy
from modelsync import keys
from modelsync.errors import PublishError, UnsafeKeyError

log = logging.getLogger(__name__)


def group_listing(objects: list[RemoteObject], single_model: str | None) -> dict[tuple[str, int], Listing]:
    """Every object under a version's prefix, by version and path inside it.

    That includes paths that cannot be files on disk (too long, unsafe): :class:`VersionSync`
    refuses such a version instead of publishing it without the file. Keys outside the layout
    are left out, unsafe ones with a warning.
    """
    grouped: dict[tuple[str, int], Listing] = {}
    for obj in objects:
        located = keys.locate(obj.key, single_model)
        if located is None:
            try:
                keys.check_safe(obj.key)
            except UnsafeKeyError as exc:
                log.warning("skipping bucket object: %s", exc)
            continue
        model, version, path = located
        grouped.setdefault((model, version), {})[path] = obj
    return grouped


def disk_files(directory: Path) -> set[str]:
    found = set()
    for root, _dirs, files in os.walk(directory):
        for name in files:
            found.add(os.path.relpath(os.path.join(root, name), directory).replace(os.sep, "/"))
    return found


class _Stoppable:
    """A stream whose reads stop when the agent does (a large file must not delay SIGTERM)."""

    def __init__(self, stream: manifest.Readable, stop: StopFlag) -> None:
        self.stream = stream
        self.stop = stop

    def read(self, size: int = -1, /) -> bytes:
        if self.stop.is_set():
            raise Cancelled("metadata.json")
        return self.stream.read(size)


class VersionSync:
    """Does the work for one :class:`Pending`; returns what happened."""

    def __init__(
        self,
        bucket: Bucket,
        state: LocalState,
        stager: Stager,
        status: StatusReporter,
        models_path: Path,
        single_model: str | None,
        settle_seconds: float,
        inflight: InFlight,
        policy: VersionPolicy | None = None,
    ) -> None:
        self.bucket = bucket
        self.policy = policy
        self.inflight = inflight
        self.state = state
        self.stager = stager
        self.status = status
        self.models_path = models_path
        self.single_model = single_model
        self.settle = settle_seconds
        self.retired: list[Path] = []  # removed versions, deleted once config.json moved on
        self.replaced: list[tuple[str, int]] = []  # versions swapped in place: OVMS must reload
        self.large_metadata: dict[tuple[str, str], bool] = {}  # (key, etag) -> is a manifest
        self.limits = placement.Limits.of(models_path)
        self.shadowed = 0  # keys under <model_name>/ at the last full listing
        self.preflight: Preflight | None = None  # set by the agent when sync.preflight is on
        self.refusals: Refusals | None = None
        self.rollback: Rollback | None = None  # set by the agent when ovms.rest_url is

    def report_shadowed(self, objects: list[RemoteObject]) -> None:
        """Say (when it changes) that keys under ``<model_name>/`` are not that model's."""
        if self.single_model is None:
            return
        prefix = f"{self.single_model}/"
        shadowed = sum(1 for obj in objects if obj.key.startswith(prefix))
        if shadowed and shadowed != self.shadowed:
            log.warning(
                "ignoring %d object(s) under %s: with ovms.model_name=%s that model's versions are "
                "at the bucket root (<version>/<file>); unset ovms.model_name to serve %s<version>/",
                shadowed,
                prefix,
                self.single_model,
                prefix,
                extra={"model": self.single_model, "event": "layout"},
            )
        self.shadowed = shadowed

    def list_version(self, model: str, version: int) -> Listing:
        prefix = keys.version_prefix(model, version, self.single_model)
        objects = list(self.bucket.list(prefix))
        return group_listing(objects, self.single_model).get((model, version), {})

    def _list_kept(self, model: str, version: int) -> Listing:
        """The version's listing, or an empty one when its model's policy does not keep it."""
        if self.policy is None or not self.policy.restricts(model):
            return self.list_version(model, version)
        # The policy chooses among every version of the model, so list them all.
        objects = list(self.bucket.list(keys.model_prefix(model, self.single_model)))
        grouped = {k: v for k, v in group_listing(objects, self.single_model).items() if k[0] == model}
        if (model, version) in grouped and (model, version) not in self.policy.keep(grouped):
            log.info(
                "model %s:%s is outside its model_version_policy (%s): not kept on disk",
                model,
                version,
                self.policy.describe(model),
                extra={"model": model, "version": version, "event": "policy"},
            )
            return {}
        return grouped.get((model, version), {})

    def run(self, pending: Pending) -> str:
        """'published', 'removed', 'unchanged', 'refused' or 'waiting' (then ``pending.due`` is set)."""
        model, version = pending.key
        listing = pending.listing if pending.listing is not None else self._list_kept(model, version)
        pending.listing = None
        self.limits.check(self.bucket.name, model, version, listing)
        target = self.models_path / model / str(version)
        current = self.state.version(model, version)
        if self.refusals is not None:
            if not listing:
                self.refusals.forget(model, version)
            elif self.refusals.refused(model, version, signature(listing)) is not None:
                return "refused"  # the same bytes again: said when they were refused
        if not listing:
            if current is None and not target.is_dir():
                return "unchanged"
            return self._remove(model, version, target)
        if current is not None and current.signature() == signature(listing) and target.is_dir():
            return "unchanged"
        expected = self._expected_files(model, version, listing)
        if not self._complete(pending, listing, expected):
            return "waiting"
        return self._publish(model, version, listing, expected, target)

    def _expected_files(
        self, model: str, version: int, listing: Listing
    ) -> dict[str, manifest.Expected] | None:
        obj = listing.get(manifest.MANIFEST_NAME)
        if obj is None:
            return None
        if obj.size > manifest.MAX_MANIFEST_BYTES:
            if self._is_manifest(obj):
                raise PublishError(
                    f"model {model}:{version}: metadata.json is a manifest (it has a files map) of "
                    f"{obj.size} bytes, over the {manifest.MAX_MANIFEST_BYTES} bytes a manifest may "
                    "have; list fewer files, or drop the files map to make it plain metadata"
                )
            return None  # plain metadata: downloaded like any other file, settle time applies
        try:
            return manifest.parse(self.bucket.read_small(obj.key, manifest.MAX_MANIFEST_BYTES))
        except manifest.ManifestError as exc:
            log.warning("model %s:%s: %s; falling back to the settle time", model, version, exc)
            return None

    def _is_manifest(self, obj: RemoteObject) -> bool:
        """Streams a large metadata.json once per ETag (a settle wait looks again and again)."""
        known = self.large_metadata.get((obj.key, obj.etag))
        if known is None:
            with self.bucket.stream(obj) as response:
                known = manifest.has_files_key(_Stoppable(response, self.stager.stop))
            if len(self.large_metadata) >= 1024:
                self.large_metadata.clear()  # a bound, not an LRU: rebuilding costs one read
            self.large_metadata[(obj.key, obj.etag)] = known
        return known

    def _complete(
        self, pending: Pending, listing: Listing, expected: dict[str, manifest.Expected] | None
    ) -> bool:
        now = time.monotonic()
        if expected is not None:
            pending.waiting_for = manifest.missing(expected, {p: o.size for p, o in listing.items()})
            if pending.waiting_for:
                # The next event for this version, or the reconcile, looks again.
                pending.due = math.inf
                log.info(
                    "model %s:%s waiting for %d file(s) of its manifest",
                    pending.model,
                    pending.version,
                    len(pending.waiting_for),
                )
            return not pending.waiting_for
        if pending.forced:
            return True
        return settled(pending, listing, self.settle, now, time.time())

    def _publish(
        self,
        model: str,
        version: int,
        listing: Listing,
        expected: dict[str, manifest.Expected] | None,
        target: Path,
    ) -> str:
        if self.state.manage(model):
            self.state.save()  # before anything is renamed into place: a crash leaves it ours
        current = self.state.version(model, version)
        started = time.monotonic()
        staged = self.stager.build(model, version, listing, current, expected)
        if staged.downloaded == 0 and target.is_dir() and disk_files(target) == set(listing):
            shutil.rmtree(staged.directory, ignore_errors=True)  # already there: adopt it
        elif not self._preflight_passed(model, version, listing, staged.directory):
            return "refused"
        else:
            existed = target.exists()
            self.inflight.add(model, version)  # a crash from here on leaves a directory of ours
            if self.rollback is not None:
                self.rollback.publish(model, version, staged.directory, target, signature(listing))
            else:
                dirswap.publish(staged.directory, target)
            if existed:
                self.replaced.append((model, version))
        self.state.set_version(model, version, staged.files)
        self.state.save()  # at once: a crash now must not cost this version's downloads again
        self.inflight.discard(model, version)
        metrics.DOWNLOAD_SECONDS.observe(time.monotonic() - started)
        metrics.DOWNLOADED_FILES.inc(staged.downloaded)
        metrics.DOWNLOADED_BYTES.inc(staged.downloaded_bytes)
        metrics.REUSED_FILES.inc(staged.reused)
        metrics.SYNCS.labels(outcome="published").inc()
        self.status.count("downloaded_files", staged.downloaded)
        self.status.count("downloaded_bytes", staged.downloaded_bytes)
        self.status.count("reused_files", staged.reused)
        self.status.version(
            model,
            version,
            "published",
            files=len(listing),
            bytes=sum(o.size for o in listing.values()),
            synced_at=time.time(),
        )
        log.info(
            "model %s:%s staged: %d downloaded (%d bytes), %d reused in %.3fs",
            model,
            version,
            staged.downloaded,
            staged.downloaded_bytes,
            staged.reused,
            time.monotonic() - started,
            extra={"model": model, "version": version, "event": "staged"},
        )
        return "published"

    def _preflight_passed(self, model: str, version: int, listing: Listing, staged: Path) -> bool:
        if self.preflight is None or self.refusals is None:
            return True
        verdict = self.preflight.check(model, version, staged)
        metrics.PREFLIGHT_SECONDS.observe(verdict.seconds)
        if verdict.ok:
            return True
        shutil.rmtree(staged, ignore_errors=True)
        self.refusals.add(model, version, signature(listing), RefusedBy.PREFLIGHT, verdict.reason)
        return False

    def _remove(self, model: str, version: int, target: Path) -> str:
        model_dir_for(self.models_path, model)  # refuses a symlinked model directory
        if target.is_dir() and not target.is_symlink():
            self.retired.append(dirswap.retire(target))
        self.state.drop_version(model, version)
        self.state.save()
        self.inflight.discard(model, version)
        self.status.forget_version(model, version)
        log.info(
            "model %s:%s removed: its objects are gone from the bucket",
            model,
            version,
            extra={"model": model, "version": version, "event": "removed"},
        )
        metrics.SYNCS.labels(outcome="removed").inc()
        return "removed"

    def clean_retired(self) -> None:
        for path in self.retired:
            shutil.rmtree(path, ignore_errors=True)
            model_dir = path.parent
            if model_dir.name not in self.state.models:
                with contextlib.suppress(OSError):
                    model_dir.rmdir()  # only when empty: never anything else's
        self.retired.clear()
