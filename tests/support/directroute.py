"""The rig of the direct routes' tests (``webhook/direct.py``, ``gateway/direct.py``): what
reaches the Flask app under a direct route, and a post that must take the Flask way."""

from __future__ import annotations

import io
from collections.abc import Iterable
from typing import Any

from flask import Flask


class FlaskCalls:
    """Wraps the real Flask app under the app's direct route (its ``wsgi_app``, a middleware
    with an ``app`` attribute) and counts what reaches it."""

    def __init__(self, app: Flask, direct_route: type) -> None:
        assert isinstance(app.wsgi_app, direct_route)
        self.direct = app.wsgi_app
        self.flask = self.direct.app
        self.paths: list[str] = []
        self.direct.app = self

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.paths.append(environ["PATH_INFO"])
        return self.flask(environ, start_response)


def post_chunked(app: Flask, path: str, body: bytes, headers: dict[str, str]) -> Any:
    """As gunicorn hands over a chunked body: no length, the stream ends where the body does.
    A direct route never takes it, so it answers the Flask way."""
    return app.test_client().post(
        path,
        input_stream=io.BytesIO(body),
        headers={"Transfer-Encoding": "chunked", **headers},
        environ_overrides={"wsgi.input_terminated": True},
    )


def answered_by_flask(
    app: Flask, direct_route: type, method: str, target: str, headers: dict[str, str], body: bytes | None
) -> Any:
    """The answer to one request through the app, once it is sure the request reached Flask."""
    calls = FlaskCalls(app, direct_route)
    answer = app.test_client().open(target, method=method, data=body, headers=headers)
    assert len(calls.paths) == 1, (target, calls.paths)
    return answer
