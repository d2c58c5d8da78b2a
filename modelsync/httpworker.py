"""gunicorn's gthread worker, with each request received in full before a thread takes it.

gthread hands a connection to a thread as soon as it is readable and the thread then reads
the request with blocking calls: sixteen clients that send half a request line hold all
2x8 threads for as long as they like. Here the worker's event loop (gunicorn's own poller)
receives the head and the body without blocking, and a thread gets the connection only once
the request is complete (its bytes are handed to gunicorn's parser, which stays the one
that decides what the request means; llhttp, through httptools, only says where it ends).
A request must arrive within ``head_timeout`` seconds (from the connection, or from the
first byte of a kept-alive one's next request) and its body within ``body_timeout`` more;
otherwise the connection is closed, with a 408 when the client had sent something.

A body larger than ``buffer_bytes`` is not held in memory here: the connection goes to a
thread once that much has arrived (or at once when Content-Length says so, which is what the
apps' 413 needs), and every read of the rest ends at the same deadline.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httptools
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
SWEEP_SECONDS = 0.25  # how often deadlines are checked while events keep the loop busy


class DeadlineSocket(socket.socket):
    """A socket whose blocking reads end at ``deadline`` (``time.monotonic()``) at the latest.

    Set when a thread takes the connection: whatever it still has to read (a body over
    ``buffer_bytes``, a read-ahead request) is bounded too. Writes are not.
    """

    deadline: float | None = None

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self.deadline is None or self.gettimeout() == 0.0:
            return super().recv(bufsize, flags)
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise ConnectionResetError(errno.ECONNRESET, "request not received in time")
        super().settimeout(remaining)
        try:
            return super().recv(bufsize, flags)
        except TimeoutError:
            # gunicorn logs a socket timeout with its traceback; a reset it logs at debug level.
            raise ConnectionResetError(errno.ECONNRESET, "request not received in time") from None
        finally:
            super().settimeout(None)


@dataclass
class Framing:
    """httptools callbacks: where the head and the message end, and what the head asked for."""

    head_done: bool = False
    complete: bool = False
    expect_continue: bool = False
    continue_sent: bool = False
    content_length: int = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        lowered = name.lower()
        if lowered == b"expect" and value.strip().lower() == b"100-continue":
            self.expect_continue = True
        elif lowered == b"content-length" and value.strip().isdigit():
            self.content_length = int(value)

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        self.complete = True


@dataclass
class Pending:
    """A request being received by the event loop."""

    deadline: float
    framing: Framing = field(default_factory=Framing)
    data: bytearray = field(default_factory=bytearray)
    parser: Any = None

    def __post_init__(self) -> None:
        self.parser = httptools.HttpRequestParser(self.framing)


class BufferingThreadWorker(ThreadWorker):  # type: ignore[misc]
    head_timeout = 10.0
    body_timeout = 30.0
    buffer_bytes = 1024 * 1024 + 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receiving: dict[TConn, Pending] = {}
        self.next_sweep = 0.0

    # -- gunicorn's entry points ---------------------------------------------------------
    def accept(self, listener: socket.socket) -> None:
        try:
            client, address = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        sock = DeadlineSocket(client.family, client.type, client.proto, fileno=client.detach())
        self.receive(TConn(self.cfg, sock, address, listener.getsockname()), b"")

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        # A kept-alive connection's next request: received here too, not in a thread.
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self.receive(conn, b"")

    def finish_request(self, conn: TConn, fs: Any) -> None:
        if not fs.cancelled() and fs.exception() is None and fs.result() is True and conn.parser:
            # The body's reading may have read ahead into the next request.
            ahead = conn.parser.unreader.take_buffered()
            if ahead:
                conn.sock.setblocking(False)
                self.receive(conn, ahead)
                return
        super().finish_request(conn, fs)

    def handle(self, conn: TConn) -> Any:
        received = getattr(conn, "received", None)
        if received is not None:
            conn.received = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(received)
            conn.data_ready = True
        return super().handle(conn)

    def handle_request(self, req: Any, conn: TConn) -> Any:
        if getattr(conn, "continued", False):
            conn.continued = False
            req._expected_100_continue = False
        return super().handle_request(req, conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if now >= self.next_sweep:
            self.next_sweep = now + SWEEP_SECONDS
            self.sweep(now)

    # -- receiving -------------------------------------------------------------------------
    def receive(self, conn: TConn, data: bytes) -> None:
        pending = Pending(deadline=time.monotonic() + self.head_timeout)
        self.receiving[conn] = pending
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_readable, conn))
        if data:
            self.take(conn, pending, data)

    def on_readable(self, conn: TConn, _sock: Any) -> None:
        pending = self.receiving.get(conn)
        if pending is None:
            return
        try:
            data = conn.sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return
        self.take(conn, pending, data)

    def take(self, conn: TConn, pending: Pending, data: bytes) -> None:
        pending.data += data
        framing = pending.framing
        head_was_done = framing.head_done
        try:
            pending.parser.feed_data(data)
        except httptools.HttpParserError:
            self.hand_over(conn, pending)  # gunicorn's parser gives the answer (400, 431...)
            return
        except httptools.HttpParserUpgrade:
            framing.complete = True
        if framing.head_done and not head_was_done:
            pending.deadline = time.monotonic() + self.body_timeout
            if framing.expect_continue and not framing.complete:
                if framing.content_length > self.buffer_bytes:
                    self.hand_over(conn, pending)  # gunicorn sends the 100 or the app a 413
                    return
                self.send_quietly(conn, CONTINUE)
                framing.continue_sent = True
        # Past buffer_bytes (a long body, or a head gunicorn's limits will refuse) a thread reads
        # on, each read ending at the same deadline.
        too_big = len(pending.data) > self.buffer_bytes or framing.content_length > self.buffer_bytes
        if framing.complete or too_big:
            self.hand_over(conn, pending)

    def hand_over(self, conn: TConn, pending: Pending) -> None:
        self.forget(conn)
        conn.sock.deadline = pending.deadline
        conn.received = bytes(pending.data)
        # gunicorn answers Expect: 100-continue when it has read the head; the loop already did,
        # or the body is all here: one interim answer is enough.
        conn.continued = pending.framing.continue_sent or pending.framing.complete
        self.enqueue_req(conn)

    def sweep(self, now: float) -> None:
        for conn, pending in list(self.receiving.items()):
            if pending.deadline <= now or (not self.alive and not pending.data):
                self.time_out(conn, pending)

    def time_out(self, conn: TConn, pending: Pending) -> None:
        if pending.data:
            what = "body" if pending.framing.head_done else "head"
            limit = self.body_timeout if pending.framing.head_done else self.head_timeout
            message = f"request {what} not received within {limit:g} seconds"
            self.log.info("closing the connection from %s: %s", conn.client, message)
            body = b'{"error":"' + message.encode() + b'"}\n'
            self.send_quietly(
                conn,
                b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body,
            )
        self.drop(conn)

    def drop(self, conn: TConn) -> None:
        self.forget(conn)
        self.nr_conns -= 1
        conn.close()

    def forget(self, conn: TConn) -> None:
        self.receiving.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    @staticmethod
    def send_quietly(conn: TConn, data: bytes) -> None:
        with contextlib.suppress(OSError):
            conn.sock.send(data)  # non-blocking: a client that does not read loses the answer


def worker_class(head_timeout: float, body_timeout: float, buffer_bytes: int) -> type[BufferingThreadWorker]:
    """The worker class for one server's settings (gunicorn takes a class for worker_class)."""
    return type(
        "BufferingThreadWorker",
        (BufferingThreadWorker,),
        {"head_timeout": head_timeout, "body_timeout": body_timeout, "buffer_bytes": buffer_bytes},
    )
