"""Real servers on loopback with a recording layer in front: moto's own S3, STS and
instance-metadata apps (or any WSGI app), and what each request said, so a test can tell which
credentials signed a request or how many GETs an object cost."""

from __future__ import annotations

import re
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]


@dataclass
class Recorder:
    """WSGI middleware: keeps what each request said, and may rewrite the body of an answer."""

    app: WsgiApp
    rewrite: Callable[[bytes], bytes] | None = None
    seen: list[Environ] = field(default_factory=list)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        self.seen.append({k: v for k, v in environ.items() if isinstance(v, str)})
        if self.rewrite is None:
            return self.app(environ, start_response)
        captured: list[Any] = []
        body = b"".join(self.app(environ, lambda status, headers, *_: captured.extend([status, headers])))
        body = self.rewrite(body)
        headers = [(k, v) for k, v in captured[1] if k.lower() != "content-length"]
        start_response(captured[0], [*headers, ("Content-Length", str(len(body)))])
        return [body]

    def access_keys(self) -> set[str]:
        found = (re.search(r"Credential=([^/]+)/", e.get("HTTP_AUTHORIZATION", "")) for e in self.seen)
        return {m.group(1) for m in found if m}


@dataclass
class Served:
    server: BaseWSGIServer
    recorder: Recorder
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    servers: list[Served] = []

    def start(app: WsgiApp, ssl_context: ssl.SSLContext | None = None, **kwargs: Any) -> Served:
        recorder = Recorder(app, **kwargs)
        server = make_server(
            "127.0.0.1", 0, recorder, True, request_handler=MotoRequestHandler, ssl_context=ssl_context
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        served = Served(server, recorder, "https" if ssl_context else "http")
        servers.append(served)
        return served

    yield start
    for served in servers:
        served.server.shutdown()


def moto_s3() -> WsgiApp:
    """moto's whole server (S3 and the rest), as ThreadedMotoServer serves it; the state is
    the test process's moto state, shared with every other moto server in it."""
    return DomainDispatcherApplication(create_backend_app)  # type: ignore[no-any-return]
