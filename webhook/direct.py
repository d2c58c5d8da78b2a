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

import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING

from modelsync.wsgidirect import Reply, declared_length, read_whole, sent_path
from webhook import auth, metrics
from webhook.intake import Intake

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

ROUTE = "/minio/events"


class DirectEvents:
    """WSGI middleware: ``app.wsgi_app = DirectEvents(app.wsgi_app, intake, limit)``."""

    def __init__(self, app: WSGIApplication, intake: Intake, limit: int) -> None:
        self.app = app
        self.intake = intake
        self.limit = limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.perf_counter()
        length = self.direct_length(environ)
        if length is None:
            return self.app(environ, start_response)
        try:
            reply = self.reply(environ["wsgi.input"], length)
        except Exception as exc:  # as Flask's handler (modelsync/web.py) would answer it
            reply = Reply.unexpected(exc)
        sent = reply.send(start_response)
        metrics.observe_latency(ROUTE, "POST", time.perf_counter() - started)
        return sent

    def reply(self, stream: IO[bytes], length: int) -> Reply:
        data = read_whole(stream, length)
        if data is None:
            return Reply.body_cut_short()
        answer = self.intake.answer(data)
        return Reply.json(answer.status, answer.document)

    def direct_length(self, environ: WSGIEnvironment) -> int | None:
        """The body's length when the post is one this route serves, else None (Flask's)."""
        # The target as sent: "/minio%2Fevents" has the same PATH_INFO, and Flask refuses it.
        if sent_path(environ) != ROUTE:
            return None
        length = declared_length(environ, self.limit)
        if length is None or not auth.is_authorized(self.intake.settings, environ.get("HTTP_AUTHORIZATION")):
            return None
        return length
