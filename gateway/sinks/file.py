"""JSON-lines file sink, rotated by size, shared safely by every gunicorn worker.

Writers serialise on an ``flock`` of ``<path>.lock``; whoever holds it rotates when the file
is full (``path`` -> ``path.1`` -> ... -> ``path.<backups>``), and every writer reopens when
the file it holds is no longer the one at ``path``. A batch is one ``write`` on an append
descriptor, so lines of two workers never interleave.

The sink does not create the directory: it is the operator's volume, and a missing mount
means the sink is down (records spill), not that the files should go elsewhere.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Sequence
from pathlib import Path

from gateway.errors import SinkError
from gateway.spill import append_whole
from modelsync.gatewayconfig import SinkConfig

DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_BACKUPS = 10


class FileSink:
    def __init__(self, config: SinkConfig) -> None:
        self.name = config.name
        self.path = Path(config.get("path"))
        self.max_bytes = int(config.get("max_bytes", DEFAULT_MAX_BYTES))
        self.backups = int(config.get("backups", DEFAULT_BACKUPS))
        self._fd = -1
        self._pid = -1

    def send(self, lines: Sequence[bytes]) -> None:
        data = b"".join(lines)
        try:
            lock = os.open(self.path.with_name(self.path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SinkError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._write(data)
        except OSError as exc:
            raise SinkError(f"cannot write {self.path}: {exc.strerror}") from None
        finally:
            os.close(lock)

    def close(self) -> None:
        if self._fd >= 0 and self._pid == os.getpid():
            os.close(self._fd)
        self._fd = -1

    def _write(self, data: bytes) -> None:
        fd = self._current()
        size = os.fstat(fd).st_size
        if size > 0 and size + len(data) > self.max_bytes:
            self._rotate()
            fd = self._current()
        append_whole(fd, data, os.fstat(fd).st_size)  # a batch cut short is cut back off

    def _current(self) -> int:
        """Our descriptor, reopened if another worker rotated the file away (or after a fork)."""
        if self._fd >= 0 and self._pid == os.getpid():
            try:
                held, named = os.fstat(self._fd), os.stat(self.path)
                if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                    return self._fd
            except FileNotFoundError:
                pass
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        self._pid = os.getpid()
        return self._fd

    def _rotate(self) -> None:
        if self.backups == 0:
            os.truncate(self.path, 0)
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{index + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
