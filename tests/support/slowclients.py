"""Clients that never finish a request: they connect, send part of one, and trickle.

One thread keeps them all: every second it sends one more byte on each trickling connection
and notes when the server closes one (and what it answered, if anything).
"""

from __future__ import annotations

import selectors
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

# What each kind sends at once, then one byte a second (None: nothing more).
KINDS: dict[str, tuple[bytes, bytes | None]] = {
    # connects and sends nothing
    "idle": (b"", None),
    # half a request line, never finished
    "line": (b"POST /minio/ev", None),
    # a header block that never ends, one more header byte a second
    "head": (b"POST /minio/events HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"a"),
    # a complete head, then a body that comes one byte a second
    "body": (
        b"POST /minio/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{",
        b" ",
    ),
}


@dataclass
class Slow:
    kind: str
    sock: socket.socket
    opened: float
    closed_after: float | None = None
    answer: bytes = b""


@dataclass
class SlowClients:
    host: str
    port: int
    path: bytes = b"/minio/events"
    clients: list[Slow] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def open(self, kind: str, count: int) -> None:
        first = KINDS[kind][0].replace(b"/minio/events", self.path)
        for _ in range(count):
            sock = socket.create_connection((self.host, self.port), timeout=10)
            if first:
                sock.sendall(first)
            sock.setblocking(False)
            self.clients.append(Slow(kind, sock, time.monotonic()))

    def run(self) -> None:
        selector = selectors.DefaultSelector()
        for client in self.clients:
            selector.register(client.sock, selectors.EVENT_READ, client)
        next_trickle = time.monotonic() + 1.0
        while not self.stop.is_set() and selector.get_map():
            for key, _ in selector.select(timeout=0.1):
                self.read(selector, key.data)
            if time.monotonic() >= next_trickle:
                next_trickle += 1.0
                self.trickle(selector)
        selector.close()

    def read(self, selector: selectors.BaseSelector, client: Slow) -> None:
        try:
            data = client.sock.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        client.answer += data
        if not data:
            self.closed(selector, client)

    def trickle(self, selector: selectors.BaseSelector) -> None:
        for client in self.clients:
            more = KINDS[client.kind][1]
            if more is None or client.closed_after is not None:
                continue
            try:
                client.sock.send(more)
            except OSError:
                self.closed(selector, client)

    def closed(self, selector: selectors.BaseSelector, client: Slow) -> None:
        if client.closed_after is None:
            client.closed_after = time.monotonic() - client.opened
            selector.unregister(client.sock)

    def open_count(self) -> int:
        return sum(1 for c in self.clients if c.closed_after is None)

    def lifetimes(self, kind: str) -> list[float]:
        return [c.closed_after for c in self.clients if c.kind == kind and c.closed_after is not None]


@contextmanager
def slow_clients(url: str, counts: dict[str, int], path: str = "/minio/events") -> Iterator[SlowClients]:
    """``counts`` connections of each kind to ``url``, trickling until the block ends."""
    host, port = url.removeprefix("http://").split(":")
    clients = SlowClients(host, int(port), path.encode())
    thread = threading.Thread(target=clients.run, daemon=True)
    try:
        for kind, count in counts.items():
            clients.open(kind, count)
        thread.start()
        yield clients
    finally:
        clients.stop.set()
        if thread.is_alive():
            thread.join(timeout=10)
        for client in clients.clients:
            client.sock.close()
