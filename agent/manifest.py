"""Deciding when an uploaded version is complete.

With a manifest (``metadata.json`` holding ``{"files": {"<path>": <size> | {"size": n,
"sha256": "..."}}}``) a version is complete once every listed file is in the bucket with its
size. Without one, once the version has been quiet for ``sync.settle_seconds``.

A manifest is read whole, so it is bounded (:data:`MAX_MANIFEST_BYTES`). A larger
``metadata.json`` is looked at as a stream only to tell which it is: without a top-level
``files`` key it is plain metadata, a file like any other; with one, a manifest over the
bound, which fails its version with an error saying so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import ijson

from modelsync import keys

MANIFEST_NAME = "metadata.json"
MAX_MANIFEST_BYTES = 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass(frozen=True)
class Expected:
    size: int
    sha256: str | None = None


class ManifestError(ValueError):
    """metadata.json exists but does not say which files make the version."""


def parse(data: bytes) -> dict[str, Expected] | None:
    """The files a manifest lists; None when metadata.json is not a manifest at all."""
    try:
        document: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ManifestError("metadata.json is not valid JSON") from None
    if not isinstance(document, dict) or "files" not in document:
        return None  # plain model metadata, no completeness claim
    files = document["files"]
    if not isinstance(files, dict) or not files:
        raise ManifestError("metadata.json: files must be a non-empty object of path -> size")
    expected = {}
    for path, spec in files.items():
        if not isinstance(path, str) or not keys.is_safe_relpath(path):
            raise ManifestError(f"metadata.json: files: unsafe path {path!r}")
        if isinstance(spec, dict):
            size, sha = spec.get("size"), spec.get("sha256")
        else:
            size, sha = spec, None
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ManifestError(f"metadata.json: files.{path}: size must be an integer >= 0")
        if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
            raise ManifestError(f"metadata.json: files.{path}: sha256 must be 64 hex digits")
        expected[path] = Expected(size, sha.lower() if sha else None)
    return expected


def has_files_key(stream: Readable) -> bool:
    """Whether the JSON document read from ``stream`` has a top-level ``files`` key.

    Streamed (ijson), so memory does not grow with the document; stops at that key. Not an
    object, or not JSON: not a manifest. Errors of ``stream.read`` itself propagate. Events
    without prefixes and a depth count: ijson's prefixes grow with the nesting, and a hostile
    document nested a million deep would cost their square in memory.
    """
    depth = 0
    try:
        for event, value in ijson.basic_parse(stream):
            if event in ("start_map", "start_array"):
                depth += 1
            elif event in ("end_map", "end_array"):
                depth -= 1
            elif depth == 1 and event == "map_key" and value == "files":
                return True
            if depth == 0:
                return False  # a top-level scalar or array, or the end of the object
            if depth == 1 and event == "start_array":
                return False  # the top level is an array
    except ijson.JSONError:
        return False
    return False


def missing(expected: dict[str, Expected], present: dict[str, int]) -> list[str]:
    """Listed files not yet in the bucket with their final size."""
    return sorted(p for p, e in expected.items() if present.get(p) != e.size)
