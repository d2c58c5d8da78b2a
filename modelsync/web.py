"""What the two Flask apps (webhook, gateway) share: a clean start-up failure, JSON error
answers, the request body within its limit whatever its framing, a path read as it was sent,
and the Prometheus exposition summed over gunicorn's workers."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, Response, current_app, jsonify, request
from gunicorn.http.errors import LimitRequestHeaders, ParseException  # type: ignore[import-untyped]
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from werkzeug.exceptions import (
    BadRequest,
    ClientDisconnected,
    HTTPException,
    RequestEntityTooLarge,
    RequestHeaderFieldsTooLarge,
)

from modelsync import logsetup
from modelsync.config import Config, load_config
from modelsync.errors import ConfigError
from modelsync.httpconn import HEAD_CHECKS, HeadCheck, RequestHead

log = logging.getLogger(__name__)


class StartupError(RuntimeError):
    """Raised from an app factory so gunicorn prints one clean line and exits non-zero."""


def new_app(import_name: str, test_config: Mapping[str, Any] | None) -> tuple[Flask, Config]:
    """The start of both factories, in the style of Flask's tutorial: settings from
    ``test_config`` (``MODELSYNC``: a ready Config, or ``CONFIG_PATH``), else the file."""
    app = Flask(import_name)
    app.config.from_mapping(CONFIG_PATH=None, MODELSYNC=None)
    if test_config is not None:
        app.config.from_mapping(test_config)
    settings: Config = app.config["MODELSYNC"] or load_settings(app.config["CONFIG_PATH"])
    logsetup.configure(settings.sync.log_level, settings.sync.log_format)
    app.config["MODELSYNC"] = settings
    return app, settings


def load_settings(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise StartupError(f"configuration error: {exc}") from None


# The body stopped short: the client went away, or was too slow for the server's body deadline
# (modelsync/httpworker.py).
BODY_CUT_SHORT = "request body not received in full (client too slow or gone)"


def error_document(message: str, **fields: object) -> dict[str, object]:
    """Every error answer's body: ``{"error": message, ...}``."""
    return {"error": message, **fields}


def error_response(status: int, message: str, **fields: object) -> tuple[Response, int]:
    return jsonify(error_document(message, **fields)), status


def register_errors(app: Flask) -> None:
    """Every error as ``{"error": ...}``: no stack trace, no secret, no echo of a large input."""

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            return error_response(413, f"request body is larger than the limit of {limit} bytes")
        if isinstance(exc, ClientDisconnected):
            return error_response(408, BODY_CUT_SHORT)
        return error_response(status, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        return error_response(500, unexpected_error(exc))


def unexpected_error(exc: Exception) -> str:
    """Logs ``exc`` (without the traceback's locals) and gives the message for the 500: the
    client learns only that it failed."""
    log.error("unhandled %s while serving a request", type(exc).__name__, exc_info=True)
    return "internal error"


def request_body() -> bytes:
    """The whole request body; 413 (:class:`RequestEntityTooLarge`) over ``MAX_CONTENT_LENGTH``.

    With ``Content-Length`` werkzeug refuses a body over the limit before reading it. A
    chunked body has no length: werkzeug reads it up to the limit and stops there, so a
    longer one would come out cut, not refused. Here one byte past the limit means 413.

    Under gunicorn (``wsgi.input_terminated``) werkzeug bounds even a body with a length by the
    limit only: one that ends before its ``Content-Length`` (the client went away) would come
    out as if whole. Here it is :class:`ClientDisconnected` (408), as the webhook's direct route
    (``webhook/direct.py``) answers it too.
    """
    limit: int | None = current_app.config["MAX_CONTENT_LENGTH"]
    length = request.content_length
    if limit is None or length is not None or "wsgi.input_terminated" not in request.environ:
        data = request.get_data(cache=False)
        if length is not None and len(data) < length:
            raise ClientDisconnected()
        return data
    stream = request.environ["wsgi.input"]
    parts: list[bytes] = []
    size = 0
    while size <= limit:
        try:
            part: bytes = stream.read(limit + 1 - size)
        except OSError:
            raise ClientDisconnected() from None
        except LimitRequestHeaders:  # a chunked body's trailer, as gunicorn bounds a head
            raise RequestHeaderFieldsTooLarge("the chunked body's trailer is too large") from None
        except ParseException as exc:  # bad chunk size, missing CRLF, bad trailer: the client's
            raise BadRequest(f"malformed chunked body ({type(exc).__name__})") from None
        if not part:
            break
        parts.append(part)
        size += len(part)
    if size > limit:
        raise RequestEntityTooLarge()
    return b"".join(parts)


def refuse_encoded_slashes(app: Flask) -> None:
    """400 for ``%2F`` in the path as the client sent it.

    The router sees the decoded path, in which ``/v2/models/a%2Fb/infer`` has one segment
    more than the client wrote (and ``double%2Fversions%2F1`` names a version). No route
    takes a ``/`` inside a segment, so such a path is refused before routing.
    """

    @app.before_request
    def encoded_slash() -> tuple[Response, int] | None:
        segment = encoded_slash_segment(
            request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI") or ""
        )
        if segment is None:
            return None
        return error_response(
            400, f"invalid path: segment {segment[:130]!r} holds an encoded '/' (%2F), which no route takes"
        )


def encoded_slash_segment(raw: str) -> str | None:
    """The first segment of the request target ``raw`` that holds ``%2F``, if any."""
    path = raw.split("?", 1)[0] if raw.startswith("/") else urlsplit(raw).path
    if "%2f" not in path.lower():
        return None
    return next(s for s in path.split("/") if "%2f" in s.lower())


def refuse_from_head(app: Flask, *checks: HeadCheck) -> None:
    """What the app refuses from a request's head alone (called once per app, after
    MAX_CONTENT_LENGTH is set): a body over the limit, an encoded slash, and ``checks``.

    To a client that sends ``Expect: 100-continue`` and waits, the server then sends this
    refusal (the app's own 4xx, then it closes) instead of a 100 Continue that invites the
    body (RFC 9110 10.1.1, modelsync/httpworker.py). A check must say True only for a head
    the app refuses before it reads the body: the body is never invited.
    """

    def too_large(head: RequestHead) -> bool:
        limit: int | None = app.config["MAX_CONTENT_LENGTH"]
        return limit is not None and head.content_length > limit

    def encoded_slash(head: RequestHead) -> bool:
        return encoded_slash_segment(head.target) is not None

    app.extensions[HEAD_CHECKS] = [too_large, encoded_slash, *checks]


def metrics_exposition() -> bytes:
    """This process's metrics, or every gunicorn worker's when PROMETHEUS_MULTIPROC_DIR is set."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return generate_latest()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)
