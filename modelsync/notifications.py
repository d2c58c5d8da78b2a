"""A MinIO notification body -> intents, the same for the webhook and the agent's Kafka reader.

MinIO posts the same JSON to its webhook target and produces it as a Kafka message value, so
one function decides both: the event schema, the key's query-unescaping, the bucket and
layout rules and the unsafe-key refusal (see :mod:`modelsync.records`). Nothing is written
here; the caller writes every intent of a body or none (a refused body leaves nothing behind).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from modelsync import fastschema, schema
from modelsync.config import Config
from modelsync.errors import ModelsyncError, SchemaViolation, UnsafeKeyError
from modelsync.intents import IntentWriter, ObjectIntent
from modelsync.records import classify

MAX_JSON_DEPTH_ERROR = "body nests too deeply"
TOO_MANY_DIGITS_ERROR = "body is not valid JSON: a number has more than 4300 digits"
# Raw UTF-8 cannot hold a surrogate; only an escape can, so the walk runs only when one is there.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class Refusal(Enum):
    """Why a whole body was refused (the webhook's 4xx, the reader's poison counter)."""

    BAD_JSON = "bad_json"
    SCHEMA = "schema"
    BAD_KEY = "bad_key"
    UNSAFE_KEY = "unsafe_key"


class Refused(ModelsyncError):
    def __init__(self, reason: Refusal, message: str, field: str | None = None) -> None:
        self.reason = reason
        self.message = message
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


@dataclass
class Decided:
    """Every record of one body, decided: intents to write and reasons of the ignored ones."""

    intents: list[ObjectIntent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def loads(data: bytes) -> Any:
    """The JSON document in ``data``; :class:`Refused` (BAD_JSON) saying what is wrong."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Refused(Refusal.BAD_JSON, f"body is not UTF-8 (byte {exc.start})") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        message = f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        raise Refused(Refusal.BAD_JSON, message) from None
    except RecursionError:
        raise Refused(Refusal.BAD_JSON, MAX_JSON_DEPTH_ERROR) from None
    except ValueError:  # an integer over Python's 4,300-digit conversion limit
        raise Refused(Refusal.BAD_JSON, TOO_MANY_DIGITS_ERROR) from None
    if _SURROGATE_ESCAPE.search(data) and not _encodable(document):
        # json accepts "\ud800" and returns a str no later step can write as UTF-8.
        raise Refused(Refusal.BAD_JSON, "body holds a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape)")
    return document


def _encodable(document: Any) -> bool:
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def records_of(body: Any) -> list[dict[str, Any]]:
    """The body's records once it passes the event schema; :class:`Refused` (SCHEMA) if not."""
    try:
        fastschema.check(schema.MINIO_EVENT, body)
    except SchemaViolation as exc:
        raise Refused(Refusal.SCHEMA, f"invalid event: {exc}", exc.field) from None
    records: list[dict[str, Any]] = body["Records"]
    return records


def decide(records: list[dict[str, Any]], settings: Config, writer: IntentWriter) -> Decided:
    """Decide on every record before any is written, so a refusal leaves nothing behind."""
    decided = Decided()
    for index, record in enumerate(records):
        key_field = f"Records[{index}].s3.object.key"
        try:
            decision = classify(record, settings)
        except UnicodeDecodeError:
            raise Refused(Refusal.BAD_KEY, "object key is not UTF-8 once decoded", key_field) from None
        except UnsafeKeyError as exc:
            raise Refused(Refusal.UNSAFE_KEY, f"unsafe object key: {exc.reason}", key_field) from None
        if decision.fields is None:
            decided.ignored.append(str(decision.ignored))
            continue
        try:
            decided.intents.append(writer.new("object", **decision.fields))
        except SchemaViolation as exc:  # a field the intent contract bounds tighter than MinIO
            raise Refused(Refusal.SCHEMA, f"invalid event: {exc}", f"Records[{index}]") from None
    return decided
