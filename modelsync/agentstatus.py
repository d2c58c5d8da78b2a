"""Reading the agent's ``status.json`` the same way in the webhook's ``/readyz`` and in
``python -m agent health`` (agent/status.py writes it)."""

from __future__ import annotations

from typing import Any


def loop_problems(status: dict[str, Any]) -> list[str]:
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


def refused_versions(status: dict[str, Any]) -> dict[str, str]:
    """``{"model:version": "refused by preflight: <reason>"}``: versions kept out of service."""
    refused = status.get("refused")
    if not isinstance(refused, dict):
        return {}
    return {
        key: f"refused by {info.get('by')}: {info.get('reason')}"
        for key, info in sorted(refused.items())
        if isinstance(info, dict)
    }
