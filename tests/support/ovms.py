"""A stand-in for OVMS's two config routes (OVMS itself does not install here): the shapes its
documentation gives (201 reloaded / 200 unchanged; GET /v1/config model status)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


class FakeOvms:
    def __init__(self, port: int = 0) -> None:
        self.reloads = 0
        self.fail_reload = False
        self.models: dict[str, list[int]] = {}
        self.failing: dict[tuple[str, int], str] = {}  # reported LOADING_FAILED with this message
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                if self.path != "/v1/config/reload":
                    return self._send(404, {"error": "not found"})
                owner.reloads += 1
                if owner.fail_reload:
                    return self._send(412, {"error": "Config file not valid"})
                return self._send(201, {})

            def do_GET(self) -> None:
                status = {
                    name: {"model_version_status": [owner.version_status(name, v) for v in versions]}
                    for name, versions in owner.models.items()
                }
                self._send(200, status)

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def version_status(self, name: str, version: int) -> dict[str, Any]:
        message = self.failing.get((name, version))
        if message is not None:
            return {
                "version": version,
                "state": "LOADING_FAILED",
                "status": {"error_code": "UNKNOWN", "error_message": message},
            }
        return {
            "version": version,
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": "OK"},
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def ovms() -> Iterator[FakeOvms]:
    server = FakeOvms()
    yield server
    server.close()
