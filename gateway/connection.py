"""One keep-alive HTTP/1.1 connection to the model server, answers parsed by httptools.

http.client parses every answer's headers with the email package, which cost a fifth of the
gateway's CPU on a small model (py-spy, bench.gateway_overhead). httptools is llhttp, the
parser Node.js and uvicorn use: same rules (Content-Length, chunked, keep-alive), in C.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
from dataclasses import dataclass, field

import httptools

from modelsync.gatewayconfig import DEFAULT_MAX_ANSWER_BYTES


class ConnectFailed(OSError):
    """The connection could not be made: nothing was sent, so trying again is safe."""


class AnswerTooLarge(OSError):
    """The answer grew past the cap: the connection is dropped rather than buffer it all (a
    broken or hostile server could otherwise fill the gateway's memory)."""

    def __init__(self, limit: int) -> None:
        super().__init__(0, f"the model server's answer is larger than {limit} bytes")
        self.limit = limit


class ClosedBeforeAnswer(OSError):
    """A kept-alive connection the server had already closed: it reset or ended it before a
    single byte of the answer. The server closed it without reading the request (the race
    every keep-alive client meets: RFC 9112, 9.3.1), so it is sent again on a new one."""


@dataclass
class ParsedResponse:
    """The model server's HTTP answer, filled in by httptools' callbacks as it arrives."""

    status: int = 0
    content_type: str = "application/json"
    chunks: list[bytes] = field(default_factory=list)
    complete: bool = False
    keep_alive: bool = False
    headers_done: bool = False
    framed: bool = False  # Content-Length or chunked: the body's end is known without EOF
    json_length: int | None = None  # Inference-Header-Content-Length: a binary tensor answer
    parser: httptools.HttpResponseParser | None = None

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"content-type":
            self.content_type = value.decode("latin-1")
        elif name in (b"content-length", b"transfer-encoding"):
            self.framed = True
        elif name == b"inference-header-content-length" and value.isdigit():
            self.json_length = int(value)

    def on_headers_complete(self) -> None:
        self.headers_done = True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        if self.parser.get_status_code() < 200:
            # 1xx (100 Continue, 103 Early Hints): an interim answer. The real one follows,
            # maybe in the same read, through this same parser.
            self.chunks.clear()
            self.content_type = "application/json"
            self.json_length = None
            self.headers_done = self.framed = False
            return
        # llhttp answers should_keep_alive() only while the message is current.
        self.keep_alive = self.parser.should_keep_alive()
        self.status = self.parser.get_status_code()
        self.complete = True

    @property
    def body(self) -> bytes:
        return b"".join(self.chunks)


class Connection:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        read_timeout: float,
        tls: ssl.SSLContext | None,
        max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES,
    ) -> None:
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tls = tls
        self.max_answer_bytes = max_answer_bytes  # head and body together, as read off the socket
        self.sock: socket.socket | None = None
        self.answered = 0  # answers read on this socket: a reused one can be stale
        self._host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # IPv6 in brackets

    def open(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except TimeoutError:
            raise ConnectFailed(errno.ETIMEDOUT, "timed out") from None
        except OSError as exc:
            raise ConnectFailed(exc.errno, exc.strerror or str(exc)) from None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except OSError as exc:
            sock.close()
            raise ConnectFailed(exc.errno, exc.strerror or str(exc)) from None
        sock.settimeout(self.read_timeout)
        self.sock = sock
        self.answered = 0

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def idle_and_dropped(self) -> bool:
        """Readable while idle: the server closed it (or sent junk). Either way, start over."""
        if self.sock is None:
            return False
        poller = select.poll()  # not select(): descriptors above 1024 are common in a busy worker
        poller.register(self.sock, select.POLLIN)
        try:
            return bool(poller.poll(0))
        except OSError:
            return True

    def exchange(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[ParsedResponse, bool]:
        """Send one request and read its whole answer; also says whether to keep the connection."""
        assert self.sock is not None
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self._host_header}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None:
            lines.append(f"Content-Length: {len(body)}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        reused = self.answered > 0
        try:
            self.sock.sendall(head + body if body else head)
            first = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError) as exc:
            if reused:
                raise ClosedBeforeAnswer(exc.errno, "closed by the server before the answer") from None
            raise
        if not first and reused:
            raise ClosedBeforeAnswer(0, "closed by the server before the answer")
        answer = self._read_answer(first)
        self.answered += 1
        return answer, answer.keep_alive

    def _read_answer(self, first: bytes) -> ParsedResponse:
        assert self.sock is not None
        answer = ParsedResponse()
        parser = answer.parser = httptools.HttpResponseParser(answer)
        data = first
        received = len(first)
        while True:
            if received > self.max_answer_bytes:
                raise AnswerTooLarge(self.max_answer_bytes)
            if data:
                parser.feed_data(data)
            if answer.complete:
                break
            data = self.sock.recv(65536)
            received += len(data)
            if not data:
                if answer.headers_done and not answer.framed:
                    break  # a body that ends where the connection does (HTTP/1.0 style)
                raise ConnectionResetError("the model server closed the connection before a whole answer")
        if not answer.complete:  # ended by the connection closing
            answer.status = parser.get_status_code()
            answer.keep_alive = False
        answer.parser = None
        return answer
