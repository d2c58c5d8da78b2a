"""Prometheus metrics of the agent, served on ``sync.metrics_port`` (off when unset)."""

from __future__ import annotations

import logging

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from modelsync.results import VersionOutcome

log = logging.getLogger(__name__)

SYNCS = Counter("modelsync_agent_syncs_total", "Model versions synced, by outcome", ["outcome"])
DOWNLOADED_BYTES = Counter("modelsync_agent_downloaded_bytes_total", "Bytes downloaded from the bucket")
DOWNLOADED_FILES = Counter("modelsync_agent_downloaded_files_total", "Files downloaded from the bucket")
REUSED_FILES = Counter("modelsync_agent_reused_files_total", "Unchanged files linked, not downloaded")
DOWNLOAD_SECONDS = Histogram(
    "modelsync_agent_version_download_seconds",
    "Time to stage one version (downloads and checks)",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
FAILURES = Counter("modelsync_agent_failures_total", "Failures, by reason", ["reason"])
INTENTS_PENDING = Gauge("modelsync_agent_intents_pending", "Intents read but not yet applied")
LAST_RECONCILE = Gauge(
    "modelsync_agent_last_reconcile_success_timestamp_seconds", "When the last full reconcile succeeded"
)
RECONCILE_SECONDS = Histogram(
    "modelsync_agent_reconcile_seconds",
    "Duration of a full reconcile (listing and comparison)",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
LOOP_FAILURES = Gauge(
    "modelsync_agent_loop_failures_consecutive",
    "Consecutive failures of one part of the agent's loop (0 once it succeeds)",
    ["step"],
)
CONFIG_SWAPS = Counter("modelsync_agent_config_swaps_total", "config.json replacements")
IGNORED_OBJECTS = Gauge(
    "modelsync_agent_ignored_objects", "Bucket objects outside the layout at the last full reconcile"
)
CONFIG_COLLISIONS = Gauge(
    "modelsync_agent_config_collisions",
    "Bucket models left out of config.json because a hand-written entry has their name",
)
REFUSED = Gauge(
    "modelsync_agent_refused_version",
    "1 for each model version refused (by the pre-flight or by OVMS) until its bytes change",
    ["model", "version", "by"],
)
PREFLIGHT_SECONDS = Histogram(
    "modelsync_agent_preflight_seconds",
    "Time of one pre-flight check (child process start, read or compile)",
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)

# Every reason label exists from the start, so dashboards show zeros instead of gaps.
for _reason in (
    "storage",
    "publish",
    "config",
    "ovms_reload",
    "intent",
    "object_changed",
    "refused_preflight",
    "refused_ovms",
):
    FAILURES.labels(reason=_reason)
for _sync in (
    VersionOutcome.PUBLISHED,
    VersionOutcome.REMOVED,
    VersionOutcome.FAILED,
    VersionOutcome.REFUSED,
):
    SYNCS.labels(outcome=_sync)


def serve(port: int | None, address: str = "0.0.0.0") -> None:  # noqa: S104 - a container port
    if not port:
        return
    start_http_server(port, addr=address)
    log.info("agent metrics on http://%s:%d/metrics", address, port)


# Fleet mode (events.kafka): the agent's reader of MinIO's event topic.
EVENT_SOURCE_CONNECTED = Gauge(
    "modelsync_agent_event_source_connected", "1 when the event topic's broker answers, 0 when not"
)
EVENT_SOURCE_LAG = Gauge(
    "modelsync_agent_event_source_lag",
    "Messages of the event topic not yet read, by partition",
    ["partition"],
)
EVENT_MESSAGES = Counter(
    "modelsync_agent_event_messages_total",
    "Event topic messages read, by outcome (applied, ignored, resync, poison)",
    ["outcome"],
)
for _outcome in ("applied", "ignored", "resync", "poison"):
    EVENT_MESSAGES.labels(outcome=_outcome)
