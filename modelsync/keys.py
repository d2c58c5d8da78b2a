"""Object keys: which are safe, and which name a file of a model version.

Bucket layout: ``<model>/<version>/<path>``; or, when ``ovms.model_name`` is set, a single
model at the bucket root as ``<version>/<path>``. ``version`` is a positive integer without
leading zeros (OVMS reads the leading digits of a directory name, so ``01`` and ``1`` would
be the same version on disk).

With ``ovms.model_name`` set, that model's versions are only at the root: a key
``<model_name>/<version>/...`` is outside the layout. Otherwise two keys (``1/x`` and
``<model_name>/1/x``) would name one file, and which one is served would depend on whether
the whole bucket or one version's prefix was listed. Other models keep ``<model>/<version>/``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelsync.errors import UnsafeKeyError

# "X as X": keys.MODEL_NAME and keys.VERSION stay importable under mypy --strict.
from modelsync.names import MODEL_NAME as MODEL_NAME
from modelsync.names import VERSION as VERSION

STATE_DIR_NAME = ".modelsync"
MAX_VERSION = 2**63 - 1
MAX_SEGMENT_BYTES = 255  # NAME_MAX on Linux file systems
MAX_KEY_BYTES = 1024  # S3's limit: a longer key cannot come from a real bucket
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, order=True)
class ObjectRef:
    """One file of one model version, as named by an object key."""

    model: str
    version: int
    path: str  # relative to the version directory, '/'-separated


def check_safe(key: str) -> None:
    """Raise :class:`UnsafeKeyError` for a key that could escape or reach modelsync's files."""
    if not key:
        raise UnsafeKeyError(key, "empty key")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise UnsafeKeyError(key[:64] + "...", f"longer than {MAX_KEY_BYTES} bytes")
    try:
        # A lone surrogate ("\ud800" in JSON) names no file and no S3 object; refused here,
        # every later encode of the key (file names, lengths, logs) would raise.
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeKeyError(key, "not encodable as UTF-8 (lone surrogate)") from None
    if key.startswith("/"):
        raise UnsafeKeyError(key, "absolute path")
    if "\\" in key:
        raise UnsafeKeyError(key, "backslash in key")
    if _CONTROL.search(key):
        raise UnsafeKeyError(key, "NUL or control character in key")
    segments = key.split("/")
    if any(s in ("..", ".") for s in segments):
        raise UnsafeKeyError(key, "'.' or '..' path segment")
    if segments[0] == STATE_DIR_NAME:
        raise UnsafeKeyError(key, f"key under modelsync's own {STATE_DIR_NAME}/ area")


def is_version(segment: str) -> bool:
    return VERSION.fullmatch(segment) is not None and int(segment) <= MAX_VERSION


def is_model_name(segment: str) -> bool:
    return MODEL_NAME.fullmatch(segment) is not None


def is_safe_relpath(path: str) -> bool:
    """A relative file path inside a version directory, with no way out of it."""
    segments = path.split("/")
    return (
        bool(path)
        and not path.startswith("/")
        and "\\" not in path
        and not _CONTROL.search(path)
        and all(s not in ("", ".", "..") for s in segments)
        and all(len(s.encode()) <= MAX_SEGMENT_BYTES for s in segments)
    )


def locate(key: str, single_model: str | None = None) -> tuple[str, int, str] | None:
    """The version whose prefix holds ``key`` and the rest of the key, from its leading
    segments alone; ``None`` when the key is outside the layout.

    It says nothing about whether the rest can be a file on disk (see :func:`placement_problem`):
    a listing must know every key under a version's prefix, to refuse the version rather than
    publish it without a file.
    """
    segments = key.split("/")
    if single_model is not None and len(segments) >= 2 and is_version(segments[0]):
        return single_model, int(segments[0]), "/".join(segments[1:])
    if single_model is not None and segments[0] == single_model:
        return None  # the layout rule: that model lives at the root
    if len(segments) >= 3 and is_model_name(segments[0]) and is_version(segments[1]):
        return segments[0], int(segments[1]), "/".join(segments[2:])
    return None


def placement_problem(key: str, path: str, name_max: int = MAX_SEGMENT_BYTES) -> str | None:
    """Why ``path`` (the part of ``key`` inside its version) cannot be a file of the version
    directory; ``None`` when it can. ``name_max`` is the file system's NAME_MAX."""
    try:
        check_safe(key)
    except UnsafeKeyError as exc:
        return exc.reason
    if not path or "" in path.split("/"):
        return "empty path segment (a leading, doubled or trailing '/')"
    for segment in path.split("/"):
        size = len(segment.encode("utf-8", "surrogatepass"))
        if size > name_max:
            return (
                f"path segment of {size} bytes is over the file system's limit of {name_max} bytes "
                "for a file name (NAME_MAX)"
            )
    return None


def parse_key(key: str, single_model: str | None = None) -> ObjectRef | None:
    """The model file a safe key names, or ``None`` when the key is outside the layout (or
    cannot be a file: a listing sees those through :func:`locate` and refuses the version)."""
    check_safe(key)
    located = locate(key, single_model)
    if located is None:
        return None
    model, version, path = located
    if not is_safe_relpath(path):
        return None
    return ObjectRef(model, version, path)


def version_prefix(model: str, version: int, single_model: str | None = None) -> str:
    """The key prefix that holds every file of one version."""
    if single_model is not None and model == single_model:
        return f"{version}/"
    return f"{model}/{version}/"


def model_prefix(model: str, single_model: str | None = None) -> str:
    return "" if single_model is not None and model == single_model else f"{model}/"
