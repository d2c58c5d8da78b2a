"""Liveness and readiness.

Ready means: intents can be written, and the agent is alive (fresh heartbeat in its status
file), can reach the bucket and has no part of its loop failing again and again. Not ready
answers 503 with the reasons.
"""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from modelsync.agentstatus import loop_problems, refused_versions
from modelsync.config import Config
from modelsync.intents import IntentWriter

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    return jsonify(status="ok"), 200


def agent_problems(settings: Config) -> list[str]:
    try:
        status: dict[str, Any] = json.loads(settings.status_path.read_bytes())
    except FileNotFoundError:
        return ["agent has not reported yet (no status file)"]
    except (OSError, json.JSONDecodeError):
        return ["agent status file is unreadable"]
    problems = []
    age = time.time() - float(status.get("heartbeat", 0))
    if age > settings.webhook.agent_stale_seconds:
        problems.append(f"agent heartbeat is {age:.0f}s old")
    storage = status.get("storage") or {}
    if storage.get("reachable") is False:
        problems.append("agent cannot reach the bucket")
    return problems + loop_problems(status)


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    settings: Config = current_app.config["MODELSYNC"]
    writer: IntentWriter = current_app.extensions["intent_writer"]
    problems = [] if writer.writable() else ["intents directory is not writable"]
    problems += agent_problems(settings)
    # Detail, not a reason to be unready: the previous version of a refused one is served.
    refused = agent_refusals(settings)
    if problems:
        return jsonify(ready=False, reasons=problems, refused=refused), 503
    return jsonify(ready=True, refused=refused), 200


def agent_refusals(settings: Config) -> dict[str, str]:
    try:
        return refused_versions(json.loads(settings.status_path.read_bytes()))
    except (OSError, ValueError):
        return {}  # agent_problems has said why
