"""Putting a complete version directory in place, in one step OVMS cannot observe half-way.

A new version is a rename of a hidden staging directory onto its number. An existing version
is replaced with ``renameat2(RENAME_EXCHANGE)``: the number never disappears, and OVMS sees a
new directory inode. Where the file system does not support the exchange, two renames.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from agent import libc

log = logging.getLogger(__name__)

AT_FDCWD = -100
RENAME_EXCHANGE = 2
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"

_renameat2 = libc.function("renameat2")


def hidden_sibling(directory: Path, prefix: str, version: int) -> Path:
    # Must not start with a digit: OVMS takes "3.tmp" or "3-partial" as version 3.
    return directory / f"{prefix}{version}-{secrets.token_hex(4)}"


def exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False when the kernel or file system cannot."""
    if _renameat2 is None:
        return False
    rc = _renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(staging: Path, target: Path) -> None:
    """Move a complete ``staging`` directory to ``target``; the old content is removed after."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return
    if exchange(staging, target):
        _remove(staging)  # now holds the old version
        return
    old = hidden_sibling(target.parent, TRASH_PREFIX, int(target.name))
    os.rename(target, old)
    os.rename(staging, target)
    _remove(old)


def publish_keeping(staging: Path, target: Path) -> Path | None:
    """Like :func:`publish`, but the replaced directory is kept (hidden) and returned."""
    if not os.path.lexists(target):
        os.rename(staging, target)
        return None
    if exchange(staging, target):
        return staging  # now holds the old version, under its hidden staging name
    old = hidden_sibling(target.parent, TRASH_PREFIX, int(target.name))
    os.rename(target, old)
    os.rename(staging, target)
    return old


def _remove(path: Path) -> None:
    """Delete a directory tree, or only the link when a symlink was planted there."""
    if path.is_symlink():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def retire(target: Path) -> Path:
    """Take a version directory out of OVMS's sight at once; the caller removes it later."""
    trash = hidden_sibling(target.parent, TRASH_PREFIX, int(target.name))
    os.rename(target, trash)
    return trash


def remove_leftovers(model_dir: Path, published: Callable[[int], bool]) -> list[Path]:
    """Staging and trash directories a crash may have left behind.

    Without ``renameat2`` a replacement is two renames; a crash between them leaves the old
    version under a trash name and none under its number. If the state still says that
    version is published, it is renamed back instead of deleted.
    """
    removed = []
    entries = [e for e in model_dir.iterdir() if e.name.startswith((STAGING_PREFIX, TRASH_PREFIX))]
    trash_of: dict[str, int] = {}
    for entry in entries:
        if entry.name.startswith(TRASH_PREFIX):
            number = entry.name.removeprefix(TRASH_PREFIX).split("-", 1)[0]
            trash_of[number] = trash_of.get(number, 0) + 1
    for entry in entries:
        version = entry.name.removeprefix(TRASH_PREFIX).split("-", 1)[0]
        restorable = (
            entry.name.startswith(TRASH_PREFIX)
            and version.isdigit()
            and trash_of[version] == 1  # two copies: which is whole is unknown, download again
            and not entry.is_symlink()
        )
        target = model_dir / version
        if restorable and published(int(version)) and not os.path.lexists(target):
            os.rename(entry, target)
            continue
        _remove(entry)  # a symlink is unlinked, never followed
        removed.append(entry)
    return removed
