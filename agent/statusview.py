"""``python -m agent status``: the status file as a table a person can read."""

from __future__ import annotations

import time
from typing import Any

from modelsync.agentstatus import loop_problems, refused_versions


def _ago(epoch: float | None, now: float) -> str:
    if not epoch:
        return "-"
    seconds = max(0, now - float(epoch))
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


_REACHABLE = {True: "reachable", False: "UNREACHABLE", None: "unknown"}


def _event_source(source: dict[str, Any], now: float) -> str:
    """One line: fleet mode's topic, whether its broker answers, lag and message counts."""
    state = "connected" if source.get("connected") else "DISCONNECTED"
    lags = [p.get("lag") for p in (source.get("partitions") or {}).values()]
    lag = sum(x for x in lags if isinstance(x, int))
    counts = ", ".join(f"{k} {v}" for k, v in (source.get("messages") or {}).items())
    line = (
        f"event topic {source.get('topic')}: {state}, {len(lags)} partition(s), lag {lag}, "
        f"messages: {counts}, last {_ago(source.get('last_message_at'), now)}"
    )
    error = source.get("last_error")
    if error and not source.get("connected"):
        line += f" ({error.get('message')})"
    return line


def render(status: dict[str, Any], now: float | None = None) -> str:
    now = time.time() if now is None else now
    storage = status.get("storage") or {}
    reconcile = status.get("last_reconcile") or {}
    config = status.get("config") or {}
    lines = [
        f"agent pid {status.get('pid')}  heartbeat {_ago(status.get('heartbeat'), now)}",
        f"bucket: {_REACHABLE[storage.get('reachable')]}"
        + (f" ({storage['error']})" if storage.get("error") else ""),
        f"last reconcile: {_ago(reconcile.get('at'), now)}"
        + (
            f", {reconcile.get('objects')} objects in {reconcile.get('duration_seconds')}s"
            if reconcile
            else ""
        ),
        f"config.json: {'valid' if config.get('valid') is not False else 'INVALID'}, "
        f"{config.get('swaps', 0)} swap(s), last {_ago(config.get('last_swap_at'), now)}",
        f"pending intents: {status.get('pending_intents', 0)}",
    ]
    lines.extend(f"FAILING: {problem}" for problem in loop_problems(status))
    for model, info in sorted((status.get("collisions") or {}).items()):
        lines.append(
            f"NAME COLLISION: {model}: config.json's hand-written entry (base_path "
            f"{info.get('hand_written_base_path')}) is kept; the bucket's versions are not served"
        )
    if status.get("event_source"):
        lines.append(_event_source(status["event_source"], now))
    resync = status.get("last_resync")
    if resync:
        lines.append(
            f"last resync {resync.get('id')}: {resync.get('status')} ({_ago(resync.get('at'), now)})"
        )
    for key, why in refused_versions(status).items():
        lines.append(f"REFUSED: {key} is not published ({why}); the previous version stays served")
    last_error = status.get("last_error")
    if last_error:
        lines.append(f"last error ({_ago(last_error.get('at'), now)}): {last_error.get('message')}")
    rows = [("MODEL", "VERSION", "STATE", "FILES", "BYTES", "LAST SYNC", "OVMS", "ERROR")]
    for model, entry in sorted((status.get("models") or {}).items()):
        for version, info in sorted(entry.get("versions", {}).items(), key=lambda kv: int(kv[0])):
            rows.append(
                (
                    model,
                    version,
                    str(info.get("state", "-")),
                    str(info.get("files", "-")),
                    str(info.get("bytes", "-")),
                    _ago(info.get("synced_at"), now),
                    str(info.get("ovms_state", "-")),
                    str(info.get("error", ""))[:60],
                )
            )
    if len(rows) == 1:
        lines.append("\nno models synced yet")
    else:
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        lines.append("")
        lines.extend(
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
        )
    return "\n".join(lines)
