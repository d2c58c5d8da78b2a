"""The spill: append-only files that hold prediction records a sink could not take yet.

Each process appends to its own *active segment*, which it keeps locked (``flock``). Sealed
segments, and those of processes that died, are unlocked: whichever reporter claims one
first replays it. A claimed segment keeps a *cursor* (bytes already delivered) next to it,
so a replay that stops half-way resumes where it stopped instead of sending records twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from gateway.errors import SpillError
from modelsync import atomic

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
CURSOR = ".cursor"


class Segment:
    """A sealed segment, locked by the reporter replaying it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd = fd
        self.cursor_path = path.with_name(path.name + CURSOR)
        self.offset = _read_cursor(self.cursor_path)

    def batches(self, size: int) -> Iterator[list[bytes]]:
        """Whole lines from the cursor on, ``size`` at a time. A torn last line (its writer
        was killed mid-append) is left out: it was never a whole record."""
        with open(self._fd, "rb", closefd=False) as handle:
            handle.seek(self.offset)
            batch: list[bytes] = []
            for line in handle:
                if not line.endswith(b"\n"):
                    log.warning("spill %s: dropping a torn last line of %d bytes", self.path.name, len(line))
                    break
                batch.append(line)
                if len(batch) >= size:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def advance(self, lines: list[bytes]) -> None:
        """Those lines reached the sink: never send them again."""
        self.offset += sum(len(line) for line in lines)
        atomic.write_bytes(self.cursor_path, str(self.offset).encode())

    def finish(self) -> None:
        self.path.unlink(missing_ok=True)
        self.cursor_path.unlink(missing_ok=True)
        self.release()

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # also drops the lock
            self._fd = -1


class Spill:
    """One sink's spill directory, as seen by one process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._fd = -1
        self._path: Path | None = None
        self._written = 0

    def prepare(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpillError(f"cannot create spill directory {self.directory}: {exc.strerror}") from None

    def append(self, lines: list[bytes]) -> None:
        data = b"".join(lines)
        with self._lock:
            try:
                if self._fd < 0:
                    self._open()
            except OSError as exc:
                raise SpillError(f"cannot open a spill segment in {self.directory}: {exc.strerror}") from None
            try:
                append_whole(self._fd, data, self._written)
            except OSError as exc:
                raise SpillError(f"cannot append to spill in {self.directory}: {exc.strerror}") from None
            self._written += len(data)

    def quarantine(self, lines: list[bytes]) -> Path:
        """Keep records the sink refused for good, out of the replay, for a person to look at."""
        directory = self.directory / "rejected"
        # Named like segments (time, pid, random): processes sharing the volume (each pid 1 in
        # its own container) never append to the same file.
        path = directory / f"rej-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        try:
            directory.mkdir(exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o640)
            try:
                append_whole(fd, b"".join(lines), os.fstat(fd).st_size)
            finally:
                os.close(fd)
        except OSError as exc:
            raise SpillError(f"cannot write {path}: {exc.strerror}") from None
        return path

    def seal(self) -> None:
        """Close the active segment so it can be replayed; the next append starts a new one."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1
                if self._written == 0 and self._path is not None:
                    self._path.unlink(missing_ok=True)
                self._path = None
                self._written = 0

    def has_active_data(self) -> bool:
        return self._written > 0

    def segments(self) -> list[Path]:
        try:
            names = sorted(p for p in os.listdir(self.directory) if p.endswith(SUFFIX))
        except FileNotFoundError:
            return []
        active = self._path.name if self._path is not None else None
        return [self.directory / name for name in names if name != active]

    def claim(self) -> Iterator[Segment]:
        """Sealed and orphaned segments this process can lock, oldest first."""
        for path in self.segments():
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue  # another reporter finished it
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # active in a live process, or being replayed by one
            if not path.exists():
                os.close(fd)
                continue
            yield Segment(path, fd)

    def _open(self) -> None:
        name = f"seg-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}{SUFFIX}"
        path = self.directory / name
        # Made and locked under a name replay does not look at, then renamed: a replayer can
        # never claim (and delete) a segment between its creation and its lock.
        hidden = self.directory / f".{name}.new"
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_NOFOLLOW, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.rename(hidden, path)
        except OSError:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._fd, self._path, self._written = fd, path, 0


def append_whole(fd: int, data: bytes, size_before: int) -> None:
    """All of ``data`` or none of it: a write cut short (disk full) is cut back off, so the
    file never holds half a line that the next append would glue onto."""
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size_before)
        raise


def _read_cursor(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except FileNotFoundError:
        return 0
    except ValueError:
        log.warning("spill cursor %s is unreadable; replaying its segment from the start", path)
        return 0
