"""The request body as JSON, refused with a reason when it is not usable.

Python's JSON decoder accepts an escaped lone UTF-16 surrogate (``"\\ud800"``) and returns a
``str`` that cannot be encoded as UTF-8: every later step that writes it (an intent file, a
log line) would fail. Such a string is client input and gets a 400 naming its field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from modelsync.notifications import MAX_JSON_DEPTH_ERROR, TOO_MANY_DIGITS_ERROR
from modelsync.web import request_body

# Raw UTF-8 text cannot hold a surrogate: only a \\uD800-\\uDFFF escape can make one. The scan
# for the escape is cheap; the walk that names the field runs only when it matches.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")


class BadBody(ValueError):
    """A body the webhook cannot take; ``field`` names the failing part when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


def parse_json_body(allow_empty: bool = False) -> Any:
    """The request body as JSON, or a :class:`BadBody` (a ValueError) saying what is wrong.

    With ``allow_empty``, no body (also a chunked one that turns out empty) is ``None``.
    """
    return parse_json(request_body(), allow_empty)


def parse_json(data: bytes, allow_empty: bool = False) -> Any:
    """``data`` as JSON, or a :class:`BadBody`; see :func:`parse_json_body`."""
    if allow_empty and not data.strip():
        return None
    try:
        document = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadBody(f"body is not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise BadBody(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except RecursionError:
        raise BadBody(MAX_JSON_DEPTH_ERROR) from None
    except ValueError:  # an integer over Python's 4,300-digit conversion limit
        raise BadBody(TOO_MANY_DIGITS_ERROR) from None
    if _SURROGATE_ESCAPE.search(data):
        field = unencodable_field(document)
        if field is not None:
            raise BadBody("string is not valid Unicode (a lone UTF-16 surrogate escape)", field)
    return document


def unencodable_field(document: Any, path: str = "") -> str | None:
    """The path (``Records[0].s3.object.key``) of the first string, or member name, that UTF-8
    cannot encode; a bad member name is spelled with backslash escapes."""
    if isinstance(document, str):
        return None if _encodable(document) else path or "body"
    if isinstance(document, list):
        for index, item in enumerate(document):
            found = unencodable_field(item, f"{path}[{index}]")
            if found is not None:
                return found
    elif isinstance(document, dict):
        for name, value in document.items():
            if not _encodable(name):
                return _join(path, name.encode("utf-8", "backslashreplace").decode())
            found = unencodable_field(value, _join(path, name))
            if found is not None:
                return found
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
