"""Compiled schema checks for hot paths (each webhook event, each intent, each config swap).

``fastjsonschema`` turns a schema into Python code once per process; deciding "valid" that way
costs a few tens of microseconds where jsonschema's interpreter takes several hundred, which
was most of the webhook's CPU per request. It only ever says "valid": whatever it rejects is
checked again by :func:`modelsync.schema.check`, so jsonschema stays the authority on what is
rejected and every error message (naming the field) is exactly what it was.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import fastjsonschema

from modelsync import schema


@functools.cache
def compiled(name: str) -> Callable[[Any], Any]:
    # use_default=False: a check must never change the document it checks.
    validate: Callable[[Any], Any] = fastjsonschema.compile(schema.load_schema(name), use_default=False)
    return validate


def check(name: str, instance: Any) -> None:
    """Same contract as :func:`modelsync.schema.check`: raises SchemaViolation naming the field."""
    try:
        compiled(name)(instance)
    except Exception:  # rejected (or anything unexpected): jsonschema decides, and says why
        schema.check(name, instance)
