"""Durable, atomic file replacement: nobody ever reads a half-written file.

Temp file in the same directory (same file system, so rename is atomic), fsync, rename over
the target, fsync the directory so the rename itself survives a crash.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(target: Path) -> Path:
    # Leading dot: the agent's watcher and OVMS both pass over hidden names.
    return target.with_name(f".{target.name}.tmp-{secrets.token_hex(6)}")


def write_bytes(
    target: Path, data: bytes, *, mode: int = 0o644, durable: bool = True, sync_dir: bool = True
) -> None:
    """``durable``: the file is fsynced before its name appears (it is never reopened by name
    after the rename); ``sync_dir``: the rename itself is fsynced too, unless the caller
    batches that (``modelsync.intents.IntentWriter.write_all``)."""
    tmp = temp_name(target)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable and sync_dir:
        fsync_dir(target.parent)


def write_json(target: Path, document: Any, *, durable: bool = True, indent: int | None = None) -> None:
    data = json.dumps(document, indent=indent, sort_keys=indent is not None) + "\n"
    write_bytes(target, data.encode("utf-8"), durable=durable)
