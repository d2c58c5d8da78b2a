"""Liveness and readiness.

Ready means: intents can be written (with room for a new intent log segment), and the agent
is alive (fresh heartbeat in its status file), can reach the bucket and has no part of its
loop failing again and again. Not ready answers 503 with the reasons.
"""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from flask import Blueprint, Response, current_app, jsonify

from modelsync.agentstatus import loop_problems, refused_versions
from modelsync.config import Config
from modelsync.intentlog import SEGMENT_BYTES
from modelsync.intents import IntentWriter
from webhook.intake import Intake

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


def intents_problems(settings: Config, writer: IntentWriter) -> list[str]:
    if not writer.writable():
        return ["intents directory is not writable"]
    # A worker's next intent log segment is made whole before its first frame: without the
    # room for it, every request that needs one would get a 503.
    free = shutil.disk_usage(settings.intents_dir).free
    if free < SEGMENT_BYTES:
        return [f"intents directory has {free} bytes free; a new intent log segment needs {SEGMENT_BYTES}"]
    return []


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    settings: Config = current_app.config["MODELSYNC"]
    intake: Intake = current_app.extensions["intake"]
    problems = intents_problems(settings, intake.writer) + agent_problems(settings)
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
