"""The webhook's intent log (intent version 3): one preallocated file per webhook process.

Version 1 and 2 cost every commit a new file: a new inode, a rename and a directory fsync.
On an ext4 without a journal the inode alone cost up to a third of a request's CPU (its
allocator scans the recently deleted inodes). Here each webhook process appends its group
commits to a *segment*, ``<id>.intentlog`` in the intents directory, created full of zeros
and fsynced before its name appears: a commit then overwrites blocks the file already owns,
so one synchronous write (``O_DSYNC``) makes it durable and no directory changes.

A segment is a run of frames, then zeros::

    b"MSIL" | payload length (u32 LE) | CRC-32 of the payload (u32 LE) | payload

The payload is a version-1 intent or a version-2 batch document (``intent.schema.json``,
``intent-batch.schema.json``), JSON in UTF-8: the schemas stay the contract, the frame only
says where each document ends. A reader stops at the first header that is not ``MSIL``
(zeros: nothing written yet) or whose payload does not match its CRC (a write in progress,
or one torn by a crash: never acknowledged, since the webhook answers after the write has
returned, durable).

The writer holds an exclusive ``flock`` on its segment from before the name appears until
its process ends. A segment nobody holds is finished: no frame will be added, and once its
frames are handled the agent deletes it. Readers must check that *before* they read to the
end (:func:`finished`), or a frame appended in between would be deleted unread.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from modelsync import atomic, intents
from modelsync.errors import IntentError

MAGIC = b"MSIL"
HEADER = struct.Struct("<4sII")
SEGMENT_SUFFIX = ".intentlog"
SEGMENT_BYTES = 4 * 1024 * 1024
_ZEROS = bytes(1024 * 1024)


def encode(payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


@dataclass(frozen=True)
class Frame:
    offset: int
    payload: bytes


@dataclass(frozen=True)
class Scan:
    """The complete frames from an offset; ``end`` is where the next one would start.
    ``torn``: something other than zeros follows them (a frame being written, or torn)."""

    frames: list[Frame]
    end: int
    torn: bool


def read_frames(path: Path, offset: int) -> Scan:
    """The frames of segment ``path`` from ``offset`` on (OSError if it cannot be read,
    :class:`NotASegment` if it is no regular file).

    Only the first SEGMENT_BYTES are read, the most a webhook writes: a hand-made file's
    length field cannot make the agent allocate gigabytes, nor its size hold more intents.
    """
    fd = _open_segment(path)
    try:
        real_size = os.fstat(fd).st_size
        size = min(real_size, SEGMENT_BYTES)
        frames: list[Frame] = []
        while offset + HEADER.size <= size:
            header = os.pread(fd, HEADER.size, offset)
            magic, length, crc = HEADER.unpack(header)
            if magic != MAGIC:
                return Scan(frames, offset, torn=any(header))
            end = offset + HEADER.size + length
            if end > size:
                return Scan(frames, offset, torn=True)
            payload = os.pread(fd, length, offset + HEADER.size)
            if len(payload) != length or zlib.crc32(payload) != crc:
                return Scan(frames, offset, torn=True)
            frames.append(Frame(offset, payload))
            offset = end
        return Scan(frames, offset, torn=real_size > size)
    finally:
        os.close(fd)


def finished(path: Path) -> bool:
    """No writer holds the segment (its webhook process ended): nothing more will be added."""
    fd = _open_segment(path)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)  # also drops the shared lock, if taken
    return True


def remove_abandoned_temp_files(directory: Path, older_than: float = 60.0) -> list[str]:
    """Hidden temp files a webhook killed mid-write left behind: a segment being filled with
    zeros (4 MiB), an intent file before its rename. Only regular files no writer holds and
    older than ``older_than`` seconds go: a live writer's temp file lives for milliseconds,
    and a segment's is locked from its creation."""
    removed = []
    cutoff = time.time() - older_than
    try:
        with os.scandir(directory) as entries:
            candidates = [e for e in entries if e.name.startswith(".") and ".tmp-" in e.name]
    except FileNotFoundError:  # removed since the agent made it: nothing was left in it
        return []
    for entry in candidates:
        try:
            if entry.stat(follow_symlinks=False).st_mtime > cutoff or not finished(Path(entry.path)):
                continue
            os.unlink(entry.path)
        except (OSError, NotASegment):
            continue
        removed.append(entry.name)
    return removed


class NotASegment(IntentError):
    """A link, pipe, directory or device where a segment should be."""


def _open_segment(path: Path) -> int:
    """Opened without following a link and without blocking: a planted FIFO must not hang
    the agent (opening one for reading waits for a writer)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise NotASegment("a symbolic link") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotASegment("not a regular file")
    return fd


class IntentLog:
    """The segment one process appends to; a new one when it is full, gone, or failed.

    Not thread-safe: the group commit calls :meth:`append` from one leader at a time.
    """

    def __init__(self, directory: Path, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.directory = directory
        self.segment_bytes = segment_bytes
        self.path: Path | None = None
        self._fd = -1
        self._pid = 0
        self._offset = 0
        self._identity = (0, 0)
        self.segments_opened = 0

    def fits(self, payload_bytes: int) -> bool:
        """A payload this size fits an empty segment (larger ones go to files)."""
        return HEADER.size + payload_bytes <= self.segment_bytes

    def append(self, payload: bytes, before_open: Callable[[], None] = lambda: None) -> None:
        """Returns once ``payload``'s frame is durable; after an error the segment is left.

        ``before_open`` runs before a new segment is made (the webhook checks there that its
        state directory is not a link made since start-up). While the segment stays where it
        was made, the frames go to the file that path names: nothing new to check.
        """
        frame = encode(payload)
        if not self._can_take(len(frame)):
            before_open()
            self._open_next()
        try:
            # O_DSYNC: durable when the write returns. One system call per commit, so one
            # hand-off of the GIL to the request threads waiting for it, not two.
            _write_all(self._fd, frame, self._offset)
        except OSError:
            # After a failed synchronous write the page cache may say clean what the disk
            # does not hold: nothing more goes into this segment.
            self.close()
            raise
        self._offset += len(frame)

    def close(self) -> None:
        # Releases the lock (the segment is finished) once every copy of the descriptor is
        # closed: a forked child closes the one it inherited, which leaves the parent's lock
        # held by the parent alone.
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.path = -1, None

    def _can_take(self, frame_bytes: int) -> bool:
        if self._fd < 0 or self._pid != os.getpid():  # none yet, or inherited through a fork
            return False
        if self._offset + frame_bytes > self.segment_bytes:
            return False
        # Deleted, or its directory moved or replaced: a frame written to it now would be
        # acknowledged where no agent reads. Still at its path, it is the file we hold.
        assert self.path is not None
        try:
            named = os.stat(self.path)
        except FileNotFoundError:
            return False
        return (named.st_dev, named.st_ino) == self._identity

    def _open_next(self) -> None:
        self.close()
        target = self.directory / f"{intents.new_intent_id()}{SEGMENT_SUFFIX}"
        tmp = atomic.temp_name(target)
        flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_DSYNC
        fd = os.open(tmp, flags, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # before the name appears: never seen unlocked
            for offset in range(0, self.segment_bytes, len(_ZEROS)):
                _write_all(fd, _ZEROS[: self.segment_bytes - offset], offset)
            os.fsync(fd)  # the inode too, before the name that leads to it
            os.rename(tmp, target)
            atomic.fsync_dir(self.directory)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        held = os.fstat(fd)
        self._identity = (held.st_dev, held.st_ino)
        self._fd, self._pid, self._offset, self.path = fd, os.getpid(), 0, target
        self.segments_opened += 1


def _write_all(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
