"""MinIO's ordinary posts to ``/minio/events``, served below Flask.

Under gunicorn, Flask's work around each request (the request and app contexts, routing,
the hooks, the response object) cost the webhook about as much CPU as everything it does
with an event, and a sustained MinIO stream is nothing but this one request. So the posts
Flask would add nothing to go straight to :meth:`webhook.intake.Intake.answer`, the same
function the Flask view calls: ``POST``, the route's exact path, a ``Content-Length`` within
the body limit, the right token. Everything else is Flask's, untouched, and answered as
before: a probe, a chunked body, a missing token (401), a body over the limit (413), an
encoded slash in the path, any other route. BENCHMARKS.md has the figures.

A new condition on the request's head (a header the route requires, a check in a Flask hook)
must send the request to Flask in :meth:`DirectEvents.direct_length` too; a new check of the
body goes in ``Intake.answer``, which both ways call.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from werkzeug.http import HTTP_STATUS_CODES

from modelsync.config import Config
from modelsync.web import BODY_CUT_SHORT, error_document, unexpected_error
from webhook import auth, metrics
from webhook.intake import Answer, Intake

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ROUTE = "/minio/events"


class DirectEvents:
    """WSGI middleware: ``app.wsgi_app = DirectEvents(app.wsgi_app, intake, limit)``."""

    def __init__(self, app: WSGIApplication, intake: Intake, limit: int) -> None:
        self.app = app
        self.intake = intake
        self.settings: Config = intake.settings
        self.limit = limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        length = self.direct_length(environ)
        if length is None:
            return self.app(environ, start_response)
        try:
            answer = self.answer(environ["wsgi.input"], length)
        except Exception as exc:  # as Flask's handler (modelsync/web.py) would answer it
            answer = Answer(500, error_document(unexpected_error(exc)))
        body = render(answer.document)
        status = f"{answer.status} {HTTP_STATUS_CODES[answer.status].upper()}"
        start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        metrics.observe_latency(ROUTE, "POST", time.perf_counter() - started)
        return [body]

    def answer(self, stream: IO[bytes], length: int) -> Answer:
        try:
            data = stream.read(length)
        except (OSError, ValueError):  # as werkzeug's reader: too slow for the deadline, or gone
            data = b""
        if len(data) < length:
            return Answer(408, error_document(BODY_CUT_SHORT))
        return self.intake.answer(data)

    def direct_length(self, environ: WSGIEnvironment) -> int | None:
        """The body's length when the post is one this route serves, else None (Flask's)."""
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("PATH_INFO") != ROUTE:
            return None
        # The target as sent: "/minio%2Fevents" has the same PATH_INFO, and Flask refuses it.
        target: str = environ.get("RAW_URI") or environ.get("REQUEST_URI") or ""
        if target.partition("?")[0] != ROUTE or "HTTP_TRANSFER_ENCODING" in environ:
            return None
        declared: str = environ.get("CONTENT_LENGTH") or ""
        # Past 40 digits it is over any limit, and past 4300 int() refuses it: Flask's to answer.
        if (
            not (declared.isascii() and declared.isdigit())
            or len(declared) > 40
            or int(declared) > self.limit
        ):
            return None
        if not auth.is_authorized(self.settings, environ.get("HTTP_AUTHORIZATION")):
            return None
        return int(declared)


def render(document: dict[str, object]) -> bytes:
    """As Flask's ``jsonify`` renders it outside debug mode, byte for byte."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode() + b"\n"
