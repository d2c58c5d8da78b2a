"""Linux system calls Python's ``os`` module does not expose (renameat2, sync_file_range)."""

from __future__ import annotations

import ctypes
from typing import Any

_libc = ctypes.CDLL(None, use_errno=True)


def function(name: str) -> Any:
    """The C library's function ``name``, or None where this libc lacks it."""
    return getattr(_libc, name, None)
