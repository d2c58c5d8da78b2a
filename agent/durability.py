"""Making a staged version durable before it is published by rename.

The promise: OVMS never sees a version whose files are not complete and durable when it is
published. The ways to keep it, and what each guarantees (figures: bench/notes/perfdl.md):

- fsync of each file as its download ends, then of the staging directories: each file's data
  and inode, then the names, are on disk. Always correct; but the download thread waits for a
  journal commit of its own per file (0.5-2.7 ms here), and for 500 small files that wait is
  most of the download.
- fsync of the staging directory only: makes the *names* durable, not what the files hold.
  With delayed allocation (ext4, XFS) a crash can leave the published names pointing at empty
  or zero-filled files. Not enough, so never used alone.
- syncfs(2) of the staging filesystem: one writeback of every dirty file and one commit. But
  it also waits for every other process's dirty data on that filesystem (1 s instead of 0.2 s
  for 500 files here while a neighbour had 1 GiB dirty), and before Linux 5.8 it could return
  success after a lost write.
- The first way with the waits moved off the download threads (this module): a download hands
  a duplicate of its descriptor to a small pool that fsyncs it while the next download runs;
  the stager waits for all of them, then fsyncs the directories, before it returns. Concurrent
  fsyncs share journal commits, nothing else's dirty data is waited for, and every file's
  error is reported on the descriptor that wrote it (a duplicate shares its error state).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from modelsync.errors import PublishError

FSYNC_THREADS = 8  # waits on the disk, not CPU: more than the downloads, so they never queue long
MAX_PENDING = 256  # descriptors held open at most: a slow disk slows the downloads, not the fd limit
# A small file's fsync is waited for in its download thread while the disk answers quickly: the
# hand-off to the pool costs ~0.3 ms of client CPU, more than a quiet disk's typical fsync
# (median 0.5 ms, 10% over 2 ms at load 3 here). When more than a quarter of the inline fsyncs
# so far took over 2 ms (a busy disk), the rest of the version's small files go to the pool too
# (bench/notes/perfdl.md, quiet-machine follow-up).
SLOW_FSYNC_SECONDS = 0.002
SLOW_SHARE = 0.25
FSYNC_SAMPLES = 32  # inline fsyncs seen before judging: the first few often spike


class DeferredFsync:
    """The fsyncs of one staged version's files, run beside the downloads; :meth:`wait` once."""

    def __init__(self, threads: int = FSYNC_THREADS, max_pending: int = MAX_PENDING) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="fsync")
        self.slots = threading.BoundedSemaphore(max_pending)
        self.futures: list[tuple[Future[None], int]] = []
        self.lock = threading.Lock()
        # Counted without a lock: a lost update only shifts the decision by one file.
        self.inline_fsyncs = 0
        self.slow_fsyncs = 0  # of those, slower than SLOW_FSYNC_SECONDS

    @property
    def disk_is_slow(self) -> bool:
        return self.inline_fsyncs >= FSYNC_SAMPLES and self.slow_fsyncs > SLOW_SHARE * self.inline_fsyncs

    def fsync_inline(self, fd: int) -> None:
        """fsync ``fd`` now (the caller keeps it), noting whether the disk is slow."""
        started = time.monotonic()
        os.fsync(fd)
        self.inline_fsyncs += 1
        if time.monotonic() - started > SLOW_FSYNC_SECONDS:
            self.slow_fsyncs += 1

    def submit(self, fd: int, path: Path) -> None:
        """fsync ``fd`` (a duplicate the caller gives away: it is closed here) soon."""
        self.slots.acquire()
        try:
            future = self.pool.submit(self._fsync, fd, path)
        except BaseException:
            self.slots.release()
            os.close(fd)
            raise
        with self.lock:
            self.futures.append((future, fd))

    def _fsync(self, fd: int, path: Path) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            raise PublishError(f"cannot write {path}: fsync failed: {exc.strerror}") from None
        finally:
            os.close(fd)
            self.slots.release()

    def wait(self) -> None:
        """Every submitted file is on disk, or the first failure is raised."""
        with self.lock:
            futures = [future for future, _ in self.futures]
        for future in futures:
            future.result()

    def close(self) -> None:
        """Wait for what is running (its descriptors are closed), drop what has not started."""
        self.pool.shutdown(wait=True, cancel_futures=True)
        with self.lock:
            for future, fd in self.futures:
                if future.cancelled():  # never ran: its descriptor is still ours to close
                    os.close(fd)
                    self.slots.release()
            self.futures.clear()
