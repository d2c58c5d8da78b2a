"""One message of MinIO's event topic -> the intents it stands for, or why it has none.

A MinIO message's value is exactly the webhook body, so it goes through the webhook's own
decision (:mod:`modelsync.notifications`). A message with the ``modelsync-command: resync``
header is the fleet's resync command (:mod:`modelsync.fleet`). Anything else that cannot be
read is poison: it is reported and skipped, never retried, never fatal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from modelsync import fleet, notifications
from modelsync.config import Config
from modelsync.errors import SchemaViolation
from modelsync.intents import IntentWriter

Headers = Sequence[tuple[str, bytes | str | None]] | Mapping[str, bytes | str | None]


class Outcome(Enum):
    APPLIED = "applied"  # at least one intent
    IGNORED = "ignored"  # nothing of ours (another bucket, event type, a key outside the layout)
    RESYNC = "resync"
    POISON = "poison"


OUTCOMES = tuple(o.value for o in Outcome)


@dataclass(frozen=True)
class Handled:
    outcome: Outcome
    intents: list[dict[str, Any]] = field(default_factory=list)
    reason: str = ""  # why poison or ignored, for the log (never the whole value)


def _header(headers: Headers | None, name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    for key, value in items:
        if key == name:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return None


def handle(value: bytes | None, headers: Headers | None, settings: Config, writer: IntentWriter) -> Handled:
    """Build (not write) the intents of one message."""
    if value is None:
        return Handled(Outcome.POISON, reason="empty value")
    limit = settings.webhook.max_body_bytes  # the same bound as a webhook body
    if len(value) > limit:
        return Handled(Outcome.POISON, reason=f"value of {len(value)} bytes, over the limit of {limit}")
    command = _header(headers, fleet.COMMAND_HEADER)
    try:
        body = notifications.loads(value)
        if command is not None:
            return _command(command, body, writer)
        decided = notifications.decide(notifications.records_of(body), settings, writer)
    except notifications.Refused as exc:
        return Handled(Outcome.POISON, reason=f"{exc.reason.value}: {exc}")
    if not decided.intents:
        return Handled(Outcome.IGNORED, reason=", ".join(sorted(set(decided.ignored))))
    return Handled(Outcome.APPLIED, decided.intents)


def _command(command: str, body: Any, writer: IntentWriter) -> Handled:
    if command != fleet.RESYNC:
        return Handled(Outcome.POISON, reason=f"unknown {fleet.COMMAND_HEADER} {command[:64]!r}")
    if not isinstance(body, dict) or not isinstance(body.get("id"), str):
        return Handled(Outcome.POISON, reason='resync command: expected {"id": ..., "model"?, "version"?}')
    unknown = sorted(set(body) - set(fleet.RESYNC_FIELDS))
    if unknown:
        return Handled(Outcome.POISON, reason=f"resync command: unknown field {unknown[0][:64]!r}")
    try:
        intent = writer.new("resync", **body)  # the id is the publisher's: every replica shares it
    except SchemaViolation as exc:
        return Handled(Outcome.POISON, reason=f"resync command: {exc}")
    return Handled(Outcome.RESYNC, [intent])
