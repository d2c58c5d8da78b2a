"""An object that changes between the agent's listing and its download is not an outage.

Deterministic: the agent reaches moto's S3 server through a plain HTTP forwarder (below) that,
on the first GET of one object, changes that object in moto *before* forwarding the GET. So
the agent has listed the old object and downloads after the change, every run. Real agent
process, real S3 server; the forwarder only passes bytes on (and, for the server that ignores
``If-Match``, drops that header, as some S3-compatible stores do).
"""

from __future__ import annotations

import http.client
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.helpers import free_port, http_ok, served_models, wait_for
from tests.support.metrics import metric
from tests.support.s3 import Bucket, S3Server
from tests.support.volume import Volume, read_status

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


@dataclass
class Forwarder:
    """HTTP forwarder to moto; ``before_get[path]`` runs once, right before that GET goes on."""

    upstream_port: int
    before_get: dict[str, Callable[[], None]] = field(default_factory=dict)
    drop_if_match: bool = False
    fired: list[str] = field(default_factory=list)

    def forward(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else None
        url = urlsplit(handler.path)
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in HOP_BY_HOP}
        hook = self.before_get.pop(url.path, None) if handler.command == "GET" and not url.query else None
        if hook is not None:
            hook()  # the object changes now: after the listing, before this download
            self.fired.append(url.path)
            if self.drop_if_match:
                headers = {k: v for k, v in headers.items() if k.lower() != "if-match"}
        upstream = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
        try:
            upstream.request(handler.command, handler.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
            handler.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP:
                    handler.send_header(name, value)
            size = answer.getheader("Content-Length") if handler.command == "HEAD" else None
            handler.send_header("Content-Length", size or str(len(data)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(data)
        finally:
            upstream.close()


def forwarding_handler(forwarder: Forwarder) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            forwarder.forward(self)

        do_HEAD = do_PUT = do_POST = do_DELETE = do_GET

    return Handler


@pytest.fixture
def forwarder(s3_server: S3Server, volume: Volume) -> Iterator[Forwarder]:
    proxy = Forwarder(s3_server.port)
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), forwarding_handler(proxy))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    volume.settings["minio"]["endpoint"] = f"http://127.0.0.1:{server.server_address[1]}"
    yield proxy
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.mark.parametrize(
    "change",
    [
        "overwrite (412 on If-Match)",
        "overwrite, If-Match ignored (size)",
        "overwrite, If-Match ignored (MD5)",
        "delete",
    ],
)
def test_an_object_changed_between_listing_and_download_is_retried_not_an_outage(
    volume: Volume, bucket: Bucket, forwarder: Forwarder, start_agent, change: str
) -> None:
    port = free_port()
    volume.settings["sync"].update(
        metrics_port=port, download_concurrency=1, interval=600, settle_seconds=0.1
    )
    volume.write()
    old = os.urandom(64 * 1024)
    new = os.urandom(64 * 1024 if "MD5" in change else 48 * 1024)
    bucket.put("m/1/model.bin", old)
    bucket.put("m/1/extra.bin", b"extra")
    bucket.put("other/1/model.bin", b"other")
    forwarder.drop_if_match = "ignored" in change
    if change == "delete":
        forwarder.before_get[f"/{bucket.name}/m/1/extra.bin"] = lambda: bucket.delete("m/1/extra.bin")
    else:
        forwarder.before_get[f"/{bucket.name}/m/1/model.bin"] = lambda: bucket.put("m/1/model.bin", new)

    agent = start_agent(wait_ready=False)
    wait_for(lambda: {"m", "other"} <= set(served_models(volume.ovms_config)), 30, what="m and other served")
    assert forwarder.fired, "the object changed between the listing and the download"
    published = volume.models / "m" / "1"
    if change == "delete":
        assert sorted(p.name for p in published.iterdir()) == ["model.bin"]
    else:
        assert (published / "model.bin").read_bytes() == new
    assert (volume.models / "other" / "1" / "model.bin").read_bytes() == b"other"
    url = f"http://127.0.0.1:{port}/metrics"
    wait_for(lambda: http_ok(url), what="metrics endpoint")
    assert metric(url, "modelsync_agent_failures_total", {"reason": "storage"}) == 0.0, agent.log
    assert metric(url, "modelsync_agent_failures_total", {"reason": "object_changed"}) == 1.0
    assert metric(url, "modelsync_agent_failures_total", {"reason": "publish"}) == 0.0
    assert read_status(volume)["storage"]["reachable"] is True
    assert "since it was listed" in agent.log
    assert "listing the version again" in agent.log
    assert "reachable again" not in agent.log
    assert "Traceback" not in agent.log
