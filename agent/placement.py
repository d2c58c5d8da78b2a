"""Whether every file of a bucket version can be a file on this volume.

A key under a version's prefix that cannot be placed (a segment over NAME_MAX, a path over
PATH_MAX, an unsafe or empty segment, a file where other keys need a directory) refuses the
whole version: publishing it without that file would serve something the bucket never held.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agent.dirswap import STAGING_PREFIX
from agent.pending import Listing
from modelsync import keys
from modelsync.errors import PublishError


def _fs_limit(path: Path, name: str, default: int) -> int:
    try:
        return os.pathconf(path, name)
    except (OSError, ValueError):
        return default


def parent_directories(paths: Iterable[str]) -> set[str]:
    """Every directory the files need: a file of the same path cannot be there too."""
    found: set[str] = set()
    for path in paths:
        parts = path.split("/")
        found.update("/".join(parts[:i]) for i in range(1, len(parts)))
    return found


def path_too_long(models_path: Path, model: str, version: int, path: str, path_max: int) -> str | None:
    """Why the file's path on disk would be over PATH_MAX; ``None`` when it fits."""
    # The longest path the agent uses for the file: inside the staging directory.
    staging = models_path / model / f"{STAGING_PREFIX}{version}-00000000"
    size = len(os.fsencode(staging / path)) + 1  # PATH_MAX counts the NUL
    if size > path_max:
        return (
            f"its path on disk would be {size} bytes, over the file system's limit of "
            f"{path_max} bytes (PATH_MAX)"
        )
    return None


@dataclass(frozen=True)
class Limits:
    """The models volume's limits, read once from the file system."""

    models_path: Path
    name_max: int
    path_max: int

    @classmethod
    def of(cls, models_path: Path) -> Limits:
        # Never above 255: the keys module (and the webhook) hold every segment to that.
        name_max = min(_fs_limit(models_path, "PC_NAME_MAX", keys.MAX_SEGMENT_BYTES), keys.MAX_SEGMENT_BYTES)
        return cls(models_path, name_max, _fs_limit(models_path, "PC_PATH_MAX", 4096))

    def check(self, bucket: str, model: str, version: int, listing: Listing) -> None:
        """Raise PublishError naming the first key of the version that cannot be a file."""
        problems = []
        directories = parent_directories(listing)
        for path, obj in sorted(listing.items()):
            problem = keys.placement_problem(obj.key, path, self.name_max) or path_too_long(
                self.models_path, model, version, path, self.path_max
            )
            if problem is None and path in directories:
                problem = f"other keys of the version need a directory {path}/ in its place"
            if problem:
                problems.append((obj.key, problem))
        if problems:
            key, problem = problems[0]
            more = f" (and {len(problems) - 1} more key(s))" if len(problems) > 1 else ""
            raise PublishError(
                f"model {model}:{version}: key {key!r} in bucket {bucket} cannot be a file "
                f"on this volume: {problem}{more}; not publishing the version without it"
            )
