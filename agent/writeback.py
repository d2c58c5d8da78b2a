"""Flushing a large download to disk while it streams in, by a thread beside the writer.

A version must be durable before it is published. Left to the end, writing back a large file
is a stall as long as the disk needs for all of it, after the network is done: the time is
network + disk. Here a flusher thread writes back each finished window
(``sync_file_range(WAIT_BEFORE | WRITE | WAIT_AFTER)``) while the writer keeps reading the
socket, so the time is about max(network, disk) and the final fsync (or syncfs) has only the
tail left. The flushed pages are dropped from the cache (``posix_fadvise(DONTNEED)``), so a
2 GiB model does not push the host's working set out of memory.

The writer never waits for the disk unless it is more than ``max_dirty`` bytes ahead of the
flusher: the amount of dirty cache a download may hold stays bounded, and on a day when the
disk is slower than the network the download runs at the disk's pace (the limit either way).
An earlier version waited for the previous window in the writer's own thread: each wait stopped
reading the socket, so network and disk took turns instead of overlapping (see
bench/notes/perfdl.md).
"""

from __future__ import annotations

import ctypes
import os
import threading
from types import TracebackType

from agent import libc

WINDOW_BYTES = 16 * 1024 * 1024
MAX_DIRTY_BYTES = 8 * WINDOW_BYTES
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4
_FLAGS = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER

_sync_file_range = libc.function("sync_file_range")
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


class WriteBehind:
    """Writeback of ``fd`` by a thread of its own, started at the first full window.

    The writer calls :meth:`advance` with the bytes it has handed to the kernel, and
    :meth:`close` (or leaves the ``with`` block) before its own fsync. A file smaller than
    one window never starts the thread.
    """

    def __init__(self, fd: int, window: int | None = None, max_dirty: int | None = None) -> None:
        self.fd = fd
        # Read at call time, so that bench.download can compare with write-behind turned off.
        self.window = WINDOW_BYTES if window is None else window
        self.max_dirty = max(MAX_DIRTY_BYTES if max_dirty is None else max_dirty, self.window)
        self.written = 0  # bytes the writer has handed to the kernel
        self.flushed = 0  # bytes written back and dropped from the cache
        self.done = False
        self.failed = False  # the flusher stopped early: the rest is the final fsync's
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None

    def due(self, total: int) -> bool:
        """Whether ``total`` bytes written complete a window the flusher should hear of."""
        return _sync_file_range is not None and total - self.written >= self.window

    def advance(self, total: int) -> None:
        """``total`` bytes are in the kernel; wait only if too far ahead of the disk."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._flush_loop, name="write-behind", daemon=True)
            self.thread.start()
        with self.changed:
            self.written = total
            self.changed.notify_all()
            while not self.failed and self.written - self.flushed > self.max_dirty:
                self.changed.wait()

    def close(self) -> None:
        """Stop the flusher (the tail is the caller's fsync's); safe to call twice."""
        with self.changed:
            self.done = True
            self.changed.notify_all()
        if self.thread is not None:
            self.thread.join()
            self.thread = None

    def _flush_loop(self) -> None:
        try:
            while self._flush_next():
                pass
        finally:
            with self.changed:
                self.failed = True  # whatever ended the loop, the writer must not wait for it
                self.changed.notify_all()

    def _flush_next(self) -> bool:
        """Write back what the writer has handed over; False when done or failed."""
        with self.changed:
            while not self.done and self.written - self.flushed < self.window:
                self.changed.wait()
            if self.done:
                return False
            start, end = self.flushed, self.written
        assert _sync_file_range is not None
        if _sync_file_range(self.fd, start, end - start, _FLAGS) != 0:
            return False  # the final fsync reports the error
        os.posix_fadvise(self.fd, start, end - start, os.POSIX_FADV_DONTNEED)
        with self.changed:
            self.flushed = end
            self.changed.notify_all()
        return True

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
