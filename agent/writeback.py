"""Flushing a large download to disk while it streams in, not all at the end.

The agent fsyncs every file before it publishes a version (a crash must never leave a
published file with holes). Left to the end, that fsync of a large file is a long stall
in which the network sits idle. Behind the writer, ``sync_file_range`` starts writeback of
each finished window and waits for the one before it (the pattern Linux's own developers
recommend for streaming writers), and ``posix_fadvise(DONTNEED)`` drops the written pages
from the cache, so a 2 GiB model does not push the host's working set out of memory.
"""

from __future__ import annotations

import ctypes
import os

from agent import libc

WINDOW_BYTES = 8 * 1024 * 1024
SYNC_FILE_RANGE_WAIT_BEFORE = 1
SYNC_FILE_RANGE_WRITE = 2
SYNC_FILE_RANGE_WAIT_AFTER = 4

_sync_file_range = libc.function("sync_file_range")
if _sync_file_range is not None:
    _sync_file_range.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]


class Writeback:
    def __init__(self, fd: int, window: int = WINDOW_BYTES) -> None:
        self.fd = fd
        self.window = window
        self.started = 0  # bytes whose writeback has been started
        self.previous: tuple[int, int] | None = None

    def due(self, total: int) -> bool:
        """Whether ``total`` bytes written complete a window to flush."""
        return _sync_file_range is not None and total - self.started >= self.window

    def flush_behind(self, total: int) -> None:
        """Start writeback up to ``total``; wait for the window before, drop it from the cache."""
        assert _sync_file_range is not None
        offset, length = self.started, total - self.started
        _sync_file_range(self.fd, offset, length, SYNC_FILE_RANGE_WRITE)
        if self.previous is not None:
            before, size = self.previous
            flags = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER
            _sync_file_range(self.fd, before, size, flags)
            os.posix_fadvise(self.fd, before, size, os.POSIX_FADV_DONTNEED)
        self.previous = (offset, length)
        self.started = total
