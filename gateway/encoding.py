"""Turning a call into JSON lines, whatever the call holds.

Never raises: a call whose answer cannot be read still becomes a record (an error record
saying so), and values JSON has no word for (NaN, infinities in an FP32 output) are written
as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` rather than as invalid JSON.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from gateway.prediction import Call, fallback_record, predictions

log = logging.getLogger(__name__)


def encode(call: Call) -> list[bytes]:
    try:
        records = predictions(call)
    except Exception as exc:  # RecursionError from a hostile body, or a bug: keep the call anyway
        log.warning("prediction of request %s could not be built: %s", call.request_id, type(exc).__name__)
        records = [fallback_record(call, f"record could not be built: {type(exc).__name__}")]
    return [_dump(record) for record in records]


def _dump(record: dict[str, Any]) -> bytes:
    try:
        text = json.dumps(record, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(record), separators=(",", ":"), allow_nan=False)
    return text.encode() + b"\n"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
