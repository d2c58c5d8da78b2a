"""JSON error answers. No stack trace, no secret and no echo of a large input ever leaves."""

from __future__ import annotations

import logging

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)


def error_response(status: int, message: str, **fields: object) -> tuple[Response, int]:
    return jsonify(error=message, **fields), status


def register(app: Flask) -> None:
    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        if status == 413:
            limit = app.config["MAX_CONTENT_LENGTH"]
            return error_response(413, f"request body is larger than the limit of {limit} bytes")
        return error_response(status, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> tuple[Response, int]:
        # Logged without the traceback's locals; the client learns only that it failed.
        log.error("unhandled %s while serving a request", type(exc).__name__, exc_info=True)
        return error_response(500, "internal error")
