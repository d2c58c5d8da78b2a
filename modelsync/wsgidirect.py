"""What the direct routes below Flask (``webhook/direct.py``, ``gateway/direct.py``) share: when
a request is one Flask would add nothing to, reading its body as Flask's side does, and writing
answers as werkzeug and ``jsonify`` would, so both ways answer alike byte for byte."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

from werkzeug.http import HTTP_STATUS_CODES

from modelsync.web import BODY_CUT_SHORT, error_document, unexpected_error

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """One answer of a direct route, as Flask would send it."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()

    @classmethod
    def json(cls, status: int, document: dict[str, object]) -> Reply:
        return cls(status, JSON, render(document))

    @classmethod
    def body_cut_short(cls) -> Reply:
        """The 408 of ``modelsync/web.py``'s handler for a body that ended before its length."""
        return cls.json(408, error_document(BODY_CUT_SHORT))

    @classmethod
    def unexpected(cls, exc: Exception) -> Reply:
        """The JSON 500 of ``modelsync/web.py``'s handler, logged as it logs it."""
        return cls.json(500, error_document(unexpected_error(exc)))

    def send(self, start_response: StartResponse) -> list[bytes]:
        head = [("Content-Type", self.content_type), ("Content-Length", str(len(self.body)))]
        start_response(status_line(self.status), [*head, *self.headers])
        return [self.body]


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
