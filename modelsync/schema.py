"""Loading the JSON schemas and turning their errors into messages a person can act on."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib.resources import files
from typing import Any, cast

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
    """The nearest oneOf/anyOf around ``error`` that describes its choices, if any."""
    node: ValidationError | None = error
    while node is not None:
        described = isinstance(node.schema, dict) and "description" in node.schema
        if node.validator in ("oneOf", "anyOf") and described:
            return node
        node = node.parent  # type: ignore[assignment]  # jsonschema types it as its generic _Error
    return None


# Errors that say a branch of a oneOf/anyOf is about another kind of value (another type, or
# another value of a discriminating member such as an intent's ``kind``), not a near miss.
def _rejects_kind(error: ValidationError) -> bool:
    depth = len(error.relative_path)
    return (error.validator in ("type", "not") and depth == 0) or (
        error.validator in ("const", "enum") and depth <= 1
    )


def _distance(errors: list[ValidationError]) -> tuple[int, int]:
    return sum(map(_rejects_kind, errors)), len(errors)


def _closest(error: ValidationError) -> tuple[ValidationError, str | None]:
    """Down from a failed oneOf/anyOf into the branch that came closest, while one did: the
    error that says what is wrong there, and the label of the outermost branch taken.

    jsonschema's best_match stops at the oneOf when its branches' errors are equally deep
    ("is not valid under any of the given schemas"), which names neither field nor choice.
    """
    label = None
    while error.validator in ("oneOf", "anyOf") and error.context:
        branches: dict[int, list[ValidationError]] = {}
        for sub in error.context:
            branches.setdefault(int(sub.relative_schema_path[0]), []).append(sub)
        ranked = sorted(branches, key=lambda i: (_distance(branches[i]), i))
        if len(ranked) > 1 and _distance(branches[ranked[0]]) == _distance(branches[ranked[1]]):
            break  # no branch came closer than another: the choice itself is the answer
        choices = cast(list[Any], error.validator_value)
        label = label or _label(choices[ranked[0]])
        error = cast(ValidationError, best_match(branches[ranked[0]]))
    return error, label


def _label(branch: Any) -> str:
    """A few words for one branch of a choice, as a person would name it."""
    if not isinstance(branch, dict):
        return str(branch)
    if "description" in branch:
        return str(branch["description"])
    members = branch.get("properties", {})
    consts = [f"{k} {v['const']!r}" for k, v in members.items() if isinstance(v, dict) and "const" in v]
    if consts:
        return ", ".join(consts)
    if branch.get("required"):
        return "{" + ", ".join(f"{name}: ..." for name in branch["required"]) + "}"
    kind = branch.get("type")
    if kind is not None:
        return " or ".join(kind) if isinstance(kind, list) else str(kind)
    return "another form"


def _describe(error: ValidationError) -> tuple[str, str]:
    error, label = _closest(error)
    choice = _choice(error)
    if error.validator in ("oneOf", "anyOf") and choice is not error:
        labels = "; ".join(_label(b) for b in cast(list[Any], error.validator_value))
        return field_path(error.absolute_path), f"matches none of the choices ({labels})"
    # A described choice of one value (a duration, a rate...) says best what that value can be.
    if choice is not None and choice.absolute_path == error.absolute_path and error.validator not in _MEMBERS:
        return field_path(choice.absolute_path), f"invalid value: {choice.schema['description']}"  # type: ignore[index]
    field, message = _describe_one(error)
    return field, f"{message} (closest choice: {label})" if label else message


_MEMBERS = frozenset({"required", "additionalProperties", "dependencies"})


def _describe_one(error: ValidationError) -> tuple[str, str]:
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
    while error.parent is not None:  # from the top: _closest picks the branch itself
        error = cast(ValidationError, error.parent)
    field, message = _describe(error)
    raise SchemaViolation(name, field, message)


def is_valid(name: str, instance: Any) -> bool:
    return bool(validator(name).is_valid(instance))
