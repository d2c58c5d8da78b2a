"""HTTP over a plain socket, for what an HTTP library will not send or hides: malformed
framing, encoded slashes, and the ``Expect: 100-continue`` handshake step by step."""

from __future__ import annotations

import socket
from dataclasses import dataclass


def connect(url: str, timeout: float = 10.0) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def raw_exchange(url: str, data: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """Send ``data`` as it is (a whole request, with ``Connection: close``) and read the answer
    until the server closes: its status and body."""
    with connect(url, timeout) as sock:
        sock.sendall(data)
        answer = read_to_close(sock)
    return int(answer.split(b" ", 2)[1]), answer.split(b"\r\n\r\n", 1)[1]


def read_to_close(sock: socket.socket) -> bytes:
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


@dataclass
class Answer:
    status: int
    head: str  # the status line and fields, as sent
    body: bytes


def read_answer(sock: socket.socket, buffered: bytes = b"") -> tuple[Answer, bytes]:
    """One answer (an interim one too: 100 has no body) and the bytes read past it."""
    data = buffered
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a complete answer: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed inside the answer's body: {head!r}")
        rest += chunk
    return Answer(status, head.decode("latin-1"), rest[:length]), rest[length:]
