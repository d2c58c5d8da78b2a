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
apps' 413 needs), and every read of the rest ends at the same deadline. So does any request
arriving while the worker already holds ``BUDGET_REQUESTS`` times ``buffer_bytes`` of
unfinished requests: memory stays bounded, and at worst the threads are held as by gthread,
for a bounded time. A response that the client does not read within ``body_timeout`` is
abandoned (the connection is closed), and a graceful close drains the client's last bytes
through the poller instead of blocking the loop (see :class:`modelsync.httpconn.Conn`).

A client that sends ``Expect: 100-continue`` gets its 100 from the loop once the head is in,
unless one of the app's head checks (``modelsync.web.refuse_from_head``) refuses the head:
then a thread runs the app, which answers from the head, and the connection closes.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import time
from functools import partial
from typing import Any

import httptools
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

from modelsync.httpconn import CONTINUE, HEAD_CHECKS, Conn, DeadlineSocket, HeadCheck, Pending, RequestHead

SWEEP_SECONDS = 0.25  # how often deadlines are checked while events keep the loop busy
STOP_LINGER_SECONDS = 2.0  # a stopping worker waits this long at most for requests being received
CLOSE_LINGER_SECONDS = 2.0  # how long a closed connection's unread input is drained (as gunicorn)
CLOSE_DRAIN_BYTES = 64 * 1024
BUDGET_REQUESTS = 32  # unfinished requests held in memory per worker, in units of buffer_bytes


class BufferingThreadWorker(ThreadWorker):  # type: ignore[misc]
    head_timeout = 10.0
    body_timeout = 30.0
    buffer_bytes = 1024 * 1024 + 64 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.receiving: dict[TConn, Pending] = {}
        self.lingering: dict[TConn, tuple[float, int]] = {}  # deadline, bytes drained
        self.buffered = 0  # bytes held in self.receiving
        self.next_sweep = 0.0
        self.stop_deadline: float | None = None

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
        sock.send_timeout = self.body_timeout
        conn = Conn(self.cfg, sock, address, listener.getsockname())
        conn.worker = self
        self.receive(conn, b"")

    def on_client_socket_readable(self, conn: TConn, client: Any) -> None:
        # A kept-alive connection's next request: received here too, not in a thread. Most
        # requests come in one read, so the poller's registration changes only when not.
        self.keepalived_conns.remove(conn)
        pending = Pending(time.monotonic() + self.head_timeout)
        self.receiving[conn] = pending
        if not self.read(conn, pending):
            self.poller.modify(client, selectors.EVENT_READ, partial(self.on_readable, conn))

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
        if getattr(conn, "refused", False):
            # The body was never invited: whatever follows the head cannot be read as the next
            # request, so the answer says Connection: close and the connection ends.
            conn.refused = False
            req.must_close = True
        return super().handle_request(req, conn)

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        if now >= self.next_sweep:
            self.next_sweep = now + SWEEP_SECONDS
            self.sweep(now)

    # -- receiving -------------------------------------------------------------------------
    def receive(self, conn: TConn, data: bytes) -> None:
        pending = Pending(time.monotonic() + self.head_timeout)
        self.receiving[conn] = pending
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_readable, conn))
        if data:
            self.take(conn, pending, data)

    def on_readable(self, conn: TConn, _sock: Any) -> None:
        pending = self.receiving.get(conn)
        if pending is not None:
            self.read(conn, pending)

    def read(self, conn: TConn, pending: Pending) -> bool:
        """One read; whether the connection left the loop (request complete, or closed)."""
        try:
            data = conn.sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self.drop(conn)
            return True
        return self.take(conn, pending, data)

    def take(self, conn: TConn, pending: Pending, data: bytes) -> bool:
        pending.chunks.append(data)
        pending.size += len(data)
        self.buffered += len(data)
        framing = pending.framing
        head_was_done = framing.head_done
        try:
            pending.parser.feed_data(data)
        except httptools.HttpParserError:
            self.hand_over(conn, pending)  # gunicorn's parser gives the answer (400, 431...)
            return True
        except httptools.HttpParserUpgrade:
            framing.complete = True
        if framing.complete:
            self.hand_over(conn, pending)
            return True
        if framing.head_done and not head_was_done:
            pending.deadline = time.monotonic() + self.body_timeout
            if pending.read_head():  # the client waits for a 100 Continue
                if self.refuses_head(pending):
                    pending.refused = True  # answered from the head (RFC 9110 10.1.1)
                    self.hand_over(conn, pending)
                    return True
                if pending.content_length <= self.buffer_bytes:
                    self.send_quietly(conn, CONTINUE)
                    pending.continue_sent = True
        # Past buffer_bytes (a long body, or a head gunicorn's limits will refuse) a thread reads
        # on, each read ending at the same deadline; with a Content-Length over it, at once (the
        # apps answer 413 from the header, and gunicorn sends the 100 Continue if one is owed).
        if (
            pending.size > self.buffer_bytes
            or pending.content_length > self.buffer_bytes
            or self.buffered > BUDGET_REQUESTS * self.buffer_bytes
        ):
            self.hand_over(conn, pending)
            return True
        return False

    def hand_over(self, conn: TConn, pending: Pending) -> None:
        self.forget(conn)
        conn.sock.deadline = pending.deadline
        conn.received = pending.data()
        # gunicorn answers Expect: 100-continue when it has read the head; the loop already did,
        # or the body is all here: one interim answer is enough.
        conn.continued = pending.continue_sent or pending.framing.complete or pending.refused
        conn.refused = pending.refused
        self.enqueue_req(conn)

    def refuses_head(self, pending: Pending) -> bool:
        """Whether one of the app's :data:`HeadCheck` refuses the request from its head."""
        checks: list[HeadCheck] = getattr(self.wsgi, "extensions", {}).get(HEAD_CHECKS, [])
        if not checks:
            return False
        head = RequestHead.parse(pending.head(), pending.content_length)
        try:
            return any(check(head) for check in checks)
        except Exception:  # the app then decides from the whole request, as without a check
            self.log.exception("a head check failed on %s %s", head.method, head.target[:200])
            return False

    def sweep(self, now: float) -> None:
        for conn, (deadline, _) in list(self.lingering.items()):
            if deadline <= now:
                self.end_linger(conn)
        if not self.alive and self.stop_deadline is None:
            # Stopping: idle connections go now, requests on their way get a short while.
            self.stop_deadline = now + STOP_LINGER_SECONDS
        stopping = self.stop_deadline is not None and self.stop_deadline <= now
        for conn, pending in list(self.receiving.items()):
            if pending.deadline <= now or stopping or (self.stop_deadline and not pending.size):
                self.time_out(conn, pending)

    def time_out(self, conn: TConn, pending: Pending) -> None:
        if pending.size:
            if self.alive:
                what = "body" if pending.framing.head_done else "head"
                limit = self.body_timeout if pending.framing.head_done else self.head_timeout
                status, message = (
                    "408 Request Timeout",
                    f"request {what} not received within {limit:g} seconds",
                )
            else:
                status, message = "503 Service Unavailable", "the server is stopping; send the request again"
            self.log.info("closing the connection from %s: %s", conn.client, message)
            body = b'{"error":"' + message.encode() + b'"}\n'
            head = f"HTTP/1.1 {status}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            self.send_quietly(conn, f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        self.drop(conn, answered=bool(pending.size))

    def drop(self, conn: TConn, answered: bool = False) -> None:
        self.forget(conn)
        self.nr_conns -= 1
        # After an answer, close as gunicorn does: unread input would make the kernel reset the
        # connection, and the client might never see the answer.
        conn.close(graceful=answered)

    def forget(self, conn: TConn) -> None:
        pending = self.receiving.pop(conn, None)
        if pending is not None:
            self.buffered -= pending.size
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    # -- closing -----------------------------------------------------------------------------
    def linger(self, conn: TConn) -> None:
        """Half-close, then drain what the client still sends until it closes, without blocking."""
        try:
            conn.sock.shutdown(socket.SHUT_WR)
            conn.sock.setblocking(False)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self.on_lingering, conn))
        except (OSError, KeyError, ValueError):
            conn.sock.close()
            return
        self.lingering[conn] = (time.monotonic() + CLOSE_LINGER_SECONDS, 0)

    def on_lingering(self, conn: TConn, _sock: Any) -> None:
        try:
            data = conn.sock.recv(64 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        deadline, drained = self.lingering.get(conn, (0.0, 0))
        if not data or drained + len(data) > CLOSE_DRAIN_BYTES:
            self.end_linger(conn)
        else:
            self.lingering[conn] = (deadline, drained + len(data))

    def end_linger(self, conn: TConn) -> None:
        self.lingering.pop(conn, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)
        conn.sock.close()

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
