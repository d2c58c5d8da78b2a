"""Loading the JSON schemas and turning their errors into messages a person can act on."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

import jsonschema
from jsonschema.exceptions import ValidationError, best_match

from modelsync.errors import SchemaViolation

MINIO_EVENT = "minio-event"
INTENT = "intent"
INTENT_BATCH = "intent-batch"
SYNC_CONFIG = "sync-config"
OVMS_CONFIG = "ovms-config"
PREDICTION = "prediction"


@functools.cache
def load_schema(name: str) -> dict[str, Any]:
    text = (files("modelsync.schemas") / f"{name}.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def validator(name: str) -> jsonschema.Draft7Validator:
    # Compiled once per process: building a validator costs far more than using one.
    return jsonschema.Draft7Validator(
        load_schema(name), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER
    )


def field_path(path: Iterable[Any]) -> str:
    """``['Records', 0, 's3', 'key']`` -> ``Records[0].s3.key``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _choice(error: ValidationError) -> ValidationError | None:
    """The nearest oneOf/anyOf around ``error`` that describes its choices, if any: its
    description says more than the one branch best_match happened to pick."""
    node: ValidationError | None = error
    while node is not None:
        described = isinstance(node.schema, dict) and "description" in node.schema
        if node.validator in ("oneOf", "anyOf") and described:
            return node
        node = node.parent  # type: ignore[assignment]  # jsonschema types it as its generic _Error
    return None


def _describe(error: ValidationError) -> tuple[str, str]:
    choice = _choice(error)
    if choice is not None:
        return field_path(choice.absolute_path), f"invalid value: {choice.schema['description']}"  # type: ignore[index]
    field = field_path(error.absolute_path)
    kind = error.validator
    schema = error.schema if isinstance(error.schema, dict) else {}
    if kind == "required":
        missing = str(error.message).split("'")[1] if "'" in error.message else "?"
        return (f"{field}.{missing}" if field else missing), "is required"
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        name = extra[0] if extra else "?"
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return (f"{field}.{name}" if field else name), f"unknown key{hint}"
    if kind == "type":
        return field, f"expected {error.validator_value}, got {type(error.instance).__name__}"
    if kind == "enum":
        return field, f"expected one of {', '.join(map(str, schema.get('enum', [])))}"
    if kind == "pattern" and "description" in schema:
        return field, f"invalid value: {schema['description']}"
    # jsonschema's own sentence quotes the offending value; cut it short so a huge
    # or hostile value is never echoed back in full.
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return field, message


def check(name: str, instance: Any) -> None:
    """Raise :class:`SchemaViolation` naming the most relevant failing field."""
    error = best_match(validator(name).iter_errors(instance))
    if error is None:
        return
    field, message = _describe(error)
    raise SchemaViolation(name, field, message)


def is_valid(name: str, instance: Any) -> bool:
    return bool(validator(name).is_valid(instance))
