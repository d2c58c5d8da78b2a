"""The pieces of :mod:`modelsync.httpworker` that hold one connection: its socket (reads end
at the request's deadline, writes after a timeout), the request being received (where its
head and message end, as llhttp sees it), and gunicorn's connection with a graceful close
that does not block the event loop."""

from __future__ import annotations

import errno
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httptools
from gunicorn.workers.gthread import TConn  # type: ignore[import-untyped]

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
# Up to 40 digits: a value larger than any body is still a length (413 at once, not a stall).
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]{1,40})[ \t]*(?=\r\n|$)", re.I)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue[ \t]*(?=\r\n|$)", re.I)


@dataclass(frozen=True)
class RequestHead:
    """A request's head as the event loop received it, for the app's :data:`HeadCheck`.

    ``headers``: lower-case names; a repeated field's values joined by "," (as gunicorn
    passes them to the app: a check sees what the app will see).
    """

    method: str
    target: str
    headers: dict[str, str]
    content_length: int

    @classmethod
    def parse(cls, head: bytes, content_length: int) -> RequestHead:
        """``head`` up to its blank line; llhttp has checked its syntax."""
        request_line, *fields = head.decode("latin-1").split("\r\n")
        method, target = request_line.split(" ", 2)[:2]
        headers: dict[str, str] = {}
        for field in fields:
            name, _, value = field.partition(":")
            key, value = name.strip().lower(), value.strip(" \t")
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        return cls(method, target, headers, content_length)


# What an app registers (``modelsync.web.refuse_from_head``), in a list under HEAD_CHECKS in
# its ``extensions`` (Flask's): True when the app will answer this head with a final status
# without reading the body, so the server must not invite the body with a 100 Continue.
HeadCheck = Callable[[RequestHead], bool]
HEAD_CHECKS = "modelsync.head_checks"


class DeadlineSocket(socket.socket):
    """A socket whose blocking reads end at ``deadline`` (``time.monotonic()``) at the latest,
    and whose blocking ``sendall`` ends after ``send_timeout`` seconds.

    The deadline is set when a thread takes the connection: whatever it still has to read (a
    body over ``buffer_bytes``, a read-ahead request) is bounded too. The loop's own reads and
    writes are non-blocking and left alone.
    """

    deadline: float | None = None
    send_timeout: float | None = None

    def sendall(self, data: Any, flags: int = 0) -> None:
        if self.send_timeout is None or self.gettimeout() is not None:
            super().sendall(data, flags)
            return
        super().settimeout(self.send_timeout)  # the whole sendall, not each send (Python 3.5+)
        try:
            super().sendall(data, flags)
        except TimeoutError:
            raise ConnectionResetError(errno.ECONNRESET, "answer not read in time") from None
        finally:
            super().settimeout(None)

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


class Framing:
    """httptools' callbacks: where the head and the message end. Only these two are set, so
    a request costs no Python call per header."""

    __slots__ = ("complete", "head_done")

    def __init__(self) -> None:
        self.head_done = False
        self.complete = False

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        self.complete = True


class Pending:
    """A request being received by the event loop."""

    __slots__ = (
        "chunks",
        "content_length",
        "continue_sent",
        "deadline",
        "framing",
        "parser",
        "refused",
        "size",
    )

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.framing = Framing()
        self.parser = httptools.HttpRequestParser(self.framing)
        self.chunks: list[bytes] = []  # joined once, when a thread takes the request
        self.size = 0
        self.content_length = 0
        self.continue_sent = False
        self.refused = False  # an app's HeadCheck refused it: answered without its body

    def read_head(self) -> bool:
        """Content-Length, from a complete head; whether the client waits for a 100 Continue.
        Only for a request whose body is still to come (llhttp checked the syntax)."""
        head = self.head()
        length = _CONTENT_LENGTH.search(head)
        self.content_length = int(length.group(1)) if length else 0
        return _EXPECT_CONTINUE.search(head) is not None

    def head(self) -> bytes:
        return self.data().split(b"\r\n\r\n", 1)[0]

    def data(self) -> bytes:
        return self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)


class Conn(TConn):  # type: ignore[misc]
    """gunicorn's connection, whose graceful close does not block the event loop.

    gunicorn closes a connection gracefully (RFC 9112 9.6: half-close, then read until the
    peer closes, for at most 2 s) in the event loop, blocking: sixty clients that send
    ``Connection: close`` and never close their side stall the loop for two minutes. Here the
    draining is one more thing the poller waits for.
    """

    worker: Any  # the BufferingThreadWorker that owns it (linger)

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self.worker.linger(self)
        else:
            super().close()
