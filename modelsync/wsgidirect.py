"""What the direct routes below Flask (``webhook/direct.py``, ``gateway/direct.py``) share: when
a request is one Flask would add nothing to, reading its body as Flask's side does, and writing
answers as werkzeug and ``jsonify`` would, so both ways answer alike byte for byte."""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING

from werkzeug.http import HTTP_STATUS_CODES

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment


def sent_path(environ: WSGIEnvironment) -> str | None:
    """The path of a ``POST`` as the client sent it, when Flask would route that very path: no
    percent-encoding (``%2F`` is refused before routing, ``modelsync/web.py``), no absolute form,
    no chunked body (Flask reads those to the limit). Else None: the request is Flask's."""
    if environ.get("REQUEST_METHOD") != "POST" or "HTTP_TRANSFER_ENCODING" in environ:
        return None
    path: str = environ.get("PATH_INFO") or ""
    target: str = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
    if target.partition("?")[0] != path or "%" in path:
        return None
    return path


def declared_length(environ: WSGIEnvironment, limit: int) -> int | None:
    """The ``Content-Length`` when it is ASCII digits within ``limit``, else None (Flask's)."""
    declared: str = environ.get("CONTENT_LENGTH") or ""
    # Past 40 digits it is over any limit, and past 4300 int() refuses it: Flask's to answer.
    if not (declared.isascii() and declared.isdigit()) or len(declared) > 40 or int(declared) > limit:
        return None
    return int(declared)


def read_whole(stream: IO[bytes], length: int) -> bytes | None:
    """The body of ``length`` bytes, or None when it ended short (408, ``web.BODY_CUT_SHORT``)."""
    try:
        data = stream.read(length)
    except (OSError, ValueError):  # as werkzeug's reader: too slow for the deadline, or gone
        return None
    return data if len(data) >= length else None


def status_line(code: int) -> str:
    """As werkzeug writes it for an int status."""
    return f"{code} {HTTP_STATUS_CODES.get(code, 'unknown').upper()}"


def render(document: dict[str, object]) -> bytes:
    """As Flask's ``jsonify`` renders it outside debug mode, byte for byte."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"
