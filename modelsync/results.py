"""Outcomes of resync intents, for ``POST /v1/resync?wait`` and ``agent resync --wait``.

``.modelsync/results/<id>.json``::

    {"id": "...", "model": "m" | null, "version": 3 | null, "status": "applied" | "failed",
     "versions": {"<model>:<version>": "<outcome>"}, "error": "...", "finished_at": 1700000000.0}

In memory a version is a ``(model, version)`` tuple and its outcome a :class:`VersionOutcome`;
the ``"<model>:<version>"`` strings exist only in the file (:meth:`ResyncOutcome.document`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import NotRequired, TypedDict

from modelsync import atomic

KEEP_SECONDS = 3600.0
VersionKey = tuple[str, int]  # (model, version)


class VersionOutcome(StrEnum):
    """What one sync of one version came to, in the style of rq's ``JobStatus``."""

    PUBLISHED = "published"  # a new or changed version is in place
    REMOVED = "removed"  # gone from the bucket, so from the disk
    UNCHANGED = "unchanged"  # the disk already matched the bucket
    WAITING = "waiting"  # the upload is not complete yet (manifest or settle time)
    RETRYING = "retrying"  # failed or raced an overwrite; tried again on a backoff
    FAILED = "failed"  # failed sync.max_attempts times: given up, its intents moved to failed/
    REFUSED = "refused"  # the pre-flight or OVMS refused these bytes: not published until they change
    IN_SYNC = "in_sync"  # resync only: in scope and found in step, nothing to do
    NOT_SYNCED = "not_synced"  # resync only: queued but not reached (bucket down, agent stopping)

    @property
    def finished(self) -> bool:
        """The version leaves the queue (its intents are committed or failed)."""
        return self not in (VersionOutcome.WAITING, VersionOutcome.RETRYING)

    @property
    def moved(self) -> bool:
        """The disk changed: config.json must follow."""
        return self in (VersionOutcome.PUBLISHED, VersionOutcome.REMOVED)

    @property
    def failed(self) -> bool:
        """A resync that asked for this version did not get it."""
        return self in (
            VersionOutcome.NOT_SYNCED,
            VersionOutcome.FAILED,
            VersionOutcome.REFUSED,
            VersionOutcome.RETRYING,
            VersionOutcome.WAITING,
        )


class ResyncStatus(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"


def version_label(key: VersionKey) -> str:
    """``"<model>:<version>"``: how the results file (and the logs) name a version."""
    return f"{key[0]}:{key[1]}"


class ResultDocument(TypedDict):
    """A results file as written (``finished_at`` is added by :meth:`ResultBox.write`)."""

    id: str
    model: str | None
    version: int | None
    status: str
    versions: NotRequired[dict[str, str]]
    error: NotRequired[str]


@dataclass
class ResyncOutcome:
    """The outcome of one resync intent while the agent works it out."""

    id: str
    model: str | None
    version: int | None
    versions: dict[VersionKey, VersionOutcome] | None = None  # None: the resync itself failed
    error: str | None = None

    def record(self, versions: dict[VersionKey, VersionOutcome]) -> None:
        self.versions = versions
        # Sorted as the labels sort (the file has always listed them so).
        not_synced = sorted(version_label(k) for k, v in versions.items() if v.failed)
        if not_synced:
            self.error = f"not synced: {', '.join(not_synced)}"

    @property
    def status(self) -> ResyncStatus:
        return ResyncStatus.FAILED if self.error is not None else ResyncStatus.APPLIED

    def document(self) -> ResultDocument:
        """The file's form: the same keys, in the same order, as before the types."""
        document: ResultDocument = {
            "id": self.id,
            "model": self.model,
            "version": self.version,
            "status": self.status.value,
        }
        if self.versions is not None:
            document["versions"] = {version_label(k): v.value for k, v in self.versions.items()}
        if self.error is not None:
            document["error"] = self.error
        return document


class ResultBox:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def write(self, outcome: ResyncOutcome) -> None:
        document = {**outcome.document(), "finished_at": time.time()}
        atomic.write_json(self.directory / f"{outcome.id}.json", document)
        self.prune()

    def prune(self) -> None:
        cutoff = time.time() - KEEP_SECONDS
        for path in self.directory.glob("*.json"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                pass

    def wait(self, intent_id: str, seconds: float, poll: float = 0.05) -> dict[str, object] | None:
        """The results file as it is on disk (passed on unchanged), or None after ``seconds``."""
        path = self.directory / f"{intent_id}.json"
        deadline = time.monotonic() + seconds
        while True:
            try:
                outcome: dict[str, object] = json.loads(path.read_bytes())
                return outcome
            except (FileNotFoundError, ValueError):
                pass
            if time.monotonic() >= deadline:
                return None
            time.sleep(poll)
