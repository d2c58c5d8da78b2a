"""Building a complete version in a hidden staging directory.

Files unchanged since the version on disk (same ETag in the state, or same size and MD5) are
hard-linked, not downloaded; the rest stream in through a bounded pool of threads (one
connection each, reused from the pool). Each file is fsynced (by a pool beside the downloads
for files of 1 MiB and more, agent/durability.py; small ones by their download thread, where
the hand-off would cost more than the wait), then the directories, before the version is returned
for publishing. Any failure removes the staging directory: nothing half-made is left for OVMS
or a restart.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from agent import sidecarlog
from agent.dirswap import STAGING_PREFIX, hidden_sibling
from agent.durability import DeferredFsync
from agent.localstate import FileState, VersionState
from agent.manifest import Expected
from agent.progress import Progress
from agent.storage import Bucket, Cancelled, RemoteObject, StopFlag
from modelsync import keys
from modelsync.atomic import fsync_dir
from modelsync.errors import InsufficientSpaceError, PublishError

log = logging.getLogger(__name__)
HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Staged:
    directory: Path
    files: dict[str, FileState]
    downloaded: int
    downloaded_bytes: int
    reused: int


def file_digest(path: Path, algorithm: str, stop: StopFlag | None = None) -> str:
    digest = hashlib.new(algorithm, usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            if stop is not None and stop.is_set():
                raise Cancelled(str(path))  # a multi-GB checksum must not delay a SIGTERM
            digest.update(chunk)
    return digest.hexdigest()


def model_dir_for(models_path: Path, model: str) -> Path:
    """The model's directory, refusing anything that would lead outside ``models_path``."""
    directory = models_path / model
    if directory.is_symlink():
        raise PublishError(f"refusing to use {directory}: it is a symbolic link")
    if directory.exists() and not directory.is_dir():
        raise PublishError(f"refusing to use {directory}: it is not a directory")
    return directory


class Stager:
    def __init__(
        self,
        bucket: Bucket,
        models_path: Path,
        concurrency: int,
        stop: threading.Event,
        progress_seconds: float = 10.0,
        min_free_bytes: int = 0,
        deferred_fsync: bool = True,  # False: each download thread waits for its own fsync
    ) -> None:
        self.bucket = bucket
        self.models_path = models_path
        self.concurrency = concurrency
        self.stop = stop
        self.progress_seconds = progress_seconds
        self.min_free_bytes = min_free_bytes
        self.deferred_fsync = deferred_fsync

    def build(
        self,
        model: str,
        version: int,
        remote: dict[str, RemoteObject],
        current: VersionState | None,
        expected: dict[str, Expected] | None = None,
    ) -> Staged:
        model_dir = model_dir_for(self.models_path, model)
        try:
            model_dir.mkdir(parents=True, exist_ok=True)
            staging = hidden_sibling(model_dir, STAGING_PREFIX, version)
            staging.mkdir()
        except OSError as exc:
            raise PublishError(f"cannot create {exc.filename or model_dir}: {exc.strerror}") from None
        try:
            label = f"{model}:{version}"
            deferred = DeferredFsync() if self.deferred_fsync else None
            try:
                return self._fill(
                    label, staging, deferred, model_dir / str(version), remote, current, expected or {}
                )
            finally:
                if deferred is not None:
                    deferred.close()
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _fill(
        self,
        label: str,
        staging: Path,
        deferred: DeferredFsync | None,
        current_dir: Path,
        remote: dict[str, RemoteObject],
        current: VersionState | None,
        expected: dict[str, Expected],
    ) -> Staged:
        to_download: list[tuple[RemoteObject, Path]] = []
        reused = 0
        directories = {staging}
        for path, obj in sorted(remote.items()):
            if not keys.is_safe_relpath(path):  # VersionSync refuses these first; never write one
                raise PublishError(f"{label}: refusing to stage {path!r}: not a safe relative path")
            dest = staging / path
            if dest.parent not in directories:
                _mkdirs(dest.parent)
                directories.update(dest.parents)
            if self._reuse(current_dir / path, obj, current, path, dest):
                reused += 1
            else:
                to_download.append((obj, dest))
        self._check_space(label, staging, sum(obj.size for obj, _ in to_download))
        self._download_all(to_download, label, deferred)
        if deferred is not None:
            deferred.wait()  # every file durable before anything reads or publishes them
        for path, spec in expected.items():
            if spec.sha256 and file_digest(staging / path, "sha256", self.stop) != spec.sha256:
                raise PublishError(f"{path}: sha256 does not match metadata.json")
        for directory in sorted(directories, key=lambda d: len(d.parts), reverse=True):
            if directory == staging or staging in directory.parents:
                fsync_dir(directory)
        files = {p: FileState(o.etag, o.size) for p, o in remote.items()}
        return Staged(staging, files, len(to_download), sum(o.size for o, _ in to_download), reused)

    def _check_space(self, label: str, staging: Path, needed: int) -> None:
        """Refuse a version that would not fit before downloading any of it (files reused from
        the served version are hard links and cost nothing)."""
        if needed == 0:
            return
        free = shutil.disk_usage(staging).free
        if needed + self.min_free_bytes > free:
            raise InsufficientSpaceError(
                f"model {label}: not enough space on {self.models_path}: {needed} bytes to download, "
                f"{free} bytes free (sync.min_free_bytes keeps {self.min_free_bytes} free); "
                "the served version stays, and the version is tried again when space appears"
            )

    def _reuse(
        self,
        source: Path,
        obj: RemoteObject,
        current: VersionState | None,
        path: str,
        dest: Path,
    ) -> bool:
        try:
            info = os.lstat(source)
        except OSError:
            return False
        # No symlink anywhere below the model directory (the version directory itself or a
        # subdirectory): lstat only looks at the last component, and a planted link would
        # have outside files hashed and hard-linked into the published version.
        version_dir = os.fspath(source)[: -(len(path) + 1)]
        inside = os.path.join(
            os.path.realpath(os.path.dirname(version_dir)), os.path.basename(version_dir), path
        )
        if os.path.realpath(source) != inside:
            return False
        # Only regular files: a planted symlink must never be followed or copied.
        if not stat.S_ISREG(info.st_mode) or info.st_size != obj.size:
            return False
        known = current.files.get(path) if current else None
        same_etag = known is not None and known.etag == obj.etag
        if not same_etag and (obj.md5 is None or file_digest(source, "md5", self.stop) != obj.md5):
            return False
        try:
            os.link(source, dest, follow_symlinks=False)
        except OSError:
            shutil.copyfile(source, dest, follow_symlinks=False)
            fsync_file(dest)  # a copy is new data: durable like a download
        return True

    def _download_all(
        self, jobs: list[tuple[RemoteObject, Path]], label: str, deferred: DeferredFsync | None
    ) -> None:
        if not jobs:
            return
        progress = Progress(label, sum(obj.size for obj, _ in jobs), self.progress_seconds)
        if len(jobs) == 1 or self.concurrency == 1:
            for obj, dest in jobs:
                self.bucket.download(obj, dest, self.stop, progress.add, deferred)
                sidecarlog.updated(dest.name, label)
            return
        # One failed file dooms the version: the others stop at their next chunk, not at
        # their end (they may be gigabytes).
        abandon = EitherEvent(self.stop)
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            futures = [
                pool.submit(self._one, obj, dest, abandon, progress, label, deferred) for obj, dest in jobs
            ]
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            for future in done:
                if future.exception() is not None:
                    abandon.set()
                    for other in futures:
                        other.cancel()
                    raise future.exception()  # type: ignore[misc]

    def _one(
        self,
        obj: RemoteObject,
        dest: Path,
        abandon: EitherEvent,
        progress: Progress,
        label: str,
        deferred: DeferredFsync | None,
    ) -> None:
        if abandon.is_set():
            raise Cancelled(obj.key)
        self.bucket.download(obj, dest, abandon, progress.add, deferred)
        sidecarlog.updated(dest.name, label)


class EitherEvent:
    """Set when the agent stops or when this batch of downloads gives up."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.own = threading.Event()

    def set(self) -> None:
        self.own.set()

    def is_set(self) -> bool:
        return self.own.is_set() or self.stop.is_set()


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _mkdirs(directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PublishError(f"cannot create {exc.filename or directory}: {exc.strerror}") from None
