"""Ordinary REST ``infer`` posts, served below Flask.

Under gunicorn, Flask's work around each request (the request and app contexts, routing, the
hooks, the response object) cost the gateway several times its own work per call. So the posts
Flask would add nothing to go straight to :func:`gateway.restcall.infer`, the same function the
Flask view calls: ``POST`` to an infer route's exact path as sent (no percent-encoding), a
``Content-Length`` within the body limit, a model and version name the view passes on.
Everything else is Flask's, untouched, and answered as before: a chunked body, a body over the
limit (413), a bad name (400), an encoded path, the health and metadata routes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from gateway import binary, restcall
from gateway.inference import Predictor
from modelsync.names import model_problem
from modelsync.wsgidirect import Reply, declared_length, read_whole, sent_path

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Route = tuple[str, str | None, int]  # model, version, body length


class DirectInfer:
    """WSGI middleware: ``app.wsgi_app = DirectInfer(app.wsgi_app, predictor, limit)``."""

    def __init__(self, app: WSGIApplication, predictor: Predictor, limit: int) -> None:
        self.app = app
        self.predictor = predictor
        self.limit = limit

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        route = self.route(environ)
        if route is None:
            return self.app(environ, start_response)
        try:
            reply = self.reply(environ, *route)
        except Exception as exc:  # as Flask's handler (modelsync/web.py) would answer it
            reply = Reply.unexpected(exc)
        return reply.send(start_response)

    def reply(self, environ: WSGIEnvironment, model: str, version: str | None, length: int) -> Reply:
        request_id = restcall.request_id(environ.get("HTTP_X_REQUEST_ID"))
        body = read_whole(environ["wsgi.input"], length)
        if body is None:  # as request_body (modelsync/web.py): 408, before any model call
            return Reply.body_cut_short()
        binary_header = environ.get("HTTP_" + binary.HEADER.upper().replace("-", "_"))
        answer = restcall.infer(self.predictor, model, version, body, request_id, binary_header)
        headers = tuple(restcall.headers(answer, request_id))
        return Reply(answer.status, answer.content_type, answer.body, headers)

    def route(self, environ: WSGIEnvironment) -> Route | None:
        """Model, version and body length when the post is one this route serves, else None."""
        path = sent_path(environ)
        if path is None or not path.startswith("/v2/models/"):
            return None
        found = restcall.INFER.fullmatch(path)
        if found is None or model_problem(found[1], found[2]) is not None:
            return None
        length = declared_length(environ, self.limit)
        return None if length is None else (found[1], found[2], length)
