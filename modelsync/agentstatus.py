"""The agent's ``status.json``: its shape as agent/status.py writes it, and reading it the same
way in the webhook's ``/readyz`` and in ``python -m agent health``.

Readers get the file from disk, written by whichever agent version runs, so they read it as
plain JSON and check what they use; the TypedDicts below are the writer's side of the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict


class StorageStatus(TypedDict):
    reachable: bool | None
    error: str | None
    at: NotRequired[float]


class ReconcileStatus(TypedDict):
    at: float
    ok: bool
    objects: int
    ignored: int
    duration_seconds: float
    queued: int


class ErrorStatus(TypedDict):
    at: float
    message: str
    model: str | None
    version: int | None


class ConfigStatus(TypedDict):
    valid: bool | None
    error: str | None
    swaps: int
    last_swap_at: float | None


ReloadOutcome = Literal["reloaded", "unchanged", "failed"]


class ReloadStatus(TypedDict):
    reload: ReloadOutcome
    error: str | None
    at: float


class FailingStep(TypedDict):
    consecutive_failures: int
    since: float
    error: str


class LoopStatus(TypedDict):
    failure_threshold: int | None
    failing_steps: dict[str, FailingStep]


Counter = Literal["downloaded_files", "downloaded_bytes", "reused_files"]


class Counters(TypedDict):
    downloaded_files: int
    downloaded_bytes: int
    reused_files: int


class VersionInfo(TypedDict, total=False):
    """What is known of one version besides its state; each sync adds what it learnt."""

    files: int
    bytes: int
    synced_at: float
    ovms_state: str  # OVMS's own word (AVAILABLE, LOADING, ...) from GET /v1/config
    error: str


class VersionStatus(VersionInfo, total=False):
    state: str  # a VersionOutcome value


class ModelStatus(TypedDict):
    versions: dict[str, VersionStatus]  # by str(version)
    last_error: NotRequired[str]
    last_sync: NotRequired[float]


class Collision(TypedDict):
    hand_written_base_path: str
    bucket_versions_in: str


class ResyncSummary(TypedDict):
    """The last resync intent handled (fleet mode: the publisher's id, the same on every replica)."""

    id: str
    status: str  # a ResyncStatus value
    at: float


class EventError(TypedDict):
    at: float
    message: str


class PartitionStatus(TypedDict):
    position: int | None
    end: int | None
    lag: int | None


class EventSourceStatus(TypedDict):
    """Fleet mode's Kafka reader (agent/eventreport.py)."""

    type: Literal["kafka"]
    topic: str
    bootstrap_servers: str
    connected: bool
    last_error: EventError | None
    last_message_at: float | None
    reconnects: int
    messages: dict[str, int]  # by outcome
    partitions: dict[str, PartitionStatus]  # by str(partition)


class StatusFields(TypedDict, total=False):
    """The parts of the document that are replaced whole (``StatusReporter.update``)."""

    last_reconcile: ReconcileStatus
    ovms: ReloadStatus
    pending_intents: int
    collisions: dict[str, Collision]  # bucket models a hand-written config.json entry keeps out
    last_resync: ResyncSummary
    event_source: EventSourceStatus


class RefusalStatus(TypedDict):
    by: str  # preflight or ovms
    reason: str
    at: float


class StatusDocument(TypedDict):
    status_version: int
    pid: int
    started_at: float
    heartbeat: float
    storage: StorageStatus
    last_reconcile: ReconcileStatus | None
    last_error: ErrorStatus | None
    config: ConfigStatus
    ovms: ReloadStatus | None
    pending_intents: int
    loop: LoopStatus  # parts of the loop failing loop.failure_threshold times in a row
    counters: Counters
    models: dict[str, ModelStatus]
    collisions: dict[str, Collision]
    refused: dict[str, RefusalStatus]  # "model:version": kept out of service until its bytes change
    last_resync: NotRequired[ResyncSummary]  # from the first resync on
    event_source: NotRequired[EventSourceStatus]  # fleet mode only


def loop_problems(status: Mapping[str, object]) -> list[str]:
    """Parts of the agent's loop that failed ``loop.failure_threshold`` times in a row."""
    loop = status.get("loop")
    failing = loop.get("failing_steps") if isinstance(loop, dict) else None
    if not isinstance(failing, dict):
        return []
    return [
        f"agent loop step {step} failed {info.get('consecutive_failures')} times in a row: "
        f"{info.get('error')}"
        for step, info in sorted(failing.items())
        if isinstance(info, dict)
    ]


def refused_versions(status: Mapping[str, object]) -> dict[str, str]:
    """``{"model:version": "refused by preflight: <reason>"}``: versions kept out of service."""
    refused = status.get("refused")
    if not isinstance(refused, dict):
        return {}
    return {
        key: f"refused by {info.get('by')}: {info.get('reason')}"
        for key, info in sorted(refused.items())
        if isinstance(info, dict)
    }
