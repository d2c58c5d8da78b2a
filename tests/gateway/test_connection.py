"""The model-service connection against a raw HTTP peer that answers in the shapes servers
really use: interim 1xx answers, bodies ended by closing, chunked bodies, idle closes."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from gateway.connection import AnswerTooLarge, Connection
from gateway.errors import ModelServiceUnavailable
from gateway.modelservice import HttpModelService
from modelsync.gatewayconfig import ModelServiceConfig
from tests.support.helpers import free_port

Script = Callable[[socket.socket], None]


@pytest.fixture
def peer() -> Iterator[Callable[[Script], int]]:
    """A one-connection server running ``script`` on the accepted socket; returns its port."""
    servers: list[socket.socket] = []

    def start(script: Script) -> int:
        server = socket.create_server(("127.0.0.1", 0))
        servers.append(server)

        def run() -> None:
            conn, _ = server.accept()
            with conn:
                script(conn)

        threading.Thread(target=run, daemon=True).start()
        return int(server.getsockname()[1])

    yield start
    for server in servers:
        server.close()


def connect(port: int) -> Connection:
    connection = Connection("127.0.0.1", port, connect_timeout=2, read_timeout=2, tls=None)
    connection.open()
    return connection


def test_an_interim_answer_in_the_same_read_as_the_real_one(peer: Callable[[Script], int]) -> None:
    def script(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhe")
        conn.recv(1)  # hold the rest back until the client is waiting for it
        conn.sendall(b"llo")
        conn.recv(65536)

    connection = connect(peer(script))
    # The peer sends the rest once it reads one more byte: sent from aside, while we wait.
    threading.Timer(0.2, lambda: connection.sock.send(b"x") if connection.sock else None).start()
    answer, keep_alive = connection.exchange("POST", "/v2/models/m/infer", {}, b"{}")
    assert (answer.status, answer.body, keep_alive) == (200, b"hello", True)


def test_a_body_ended_by_closing_and_a_chunked_body(peer: Callable[[Script], int]) -> None:
    def chunked(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        conn.recv(65536)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close")

    connection = connect(peer(chunked))
    answer, keep_alive = connection.exchange("GET", "/v2", {}, None)
    assert (answer.body, keep_alive) == (b"abcde", True)
    answer, keep_alive = connection.exchange("GET", "/v2", {}, None)
    assert (answer.body, answer.content_type, keep_alive) == (b"until-close", "text/plain", False)


def test_a_connection_closed_while_idle_is_replaced_not_used() -> None:
    """The server answers one request per connection and then closes it (a keep-alive timeout):
    the second call must open a new connection, not write into the closed one."""
    server = socket.create_server(("127.0.0.1", 0))
    requests_seen: list[bytes] = []
    closed = threading.Event()

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                requests_seen.append(conn.recv(65536))
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            closed.set()

    threading.Thread(target=serve, daemon=True).start()
    port = server.getsockname()[1]
    service = HttpModelService(ModelServiceConfig(url=f"http://127.0.0.1:{port}", connect_retries=0))
    try:
        assert service.get("/v2/health/ready").status == 200
        closed.wait(5)
        assert service.get("/v2/health/ready").status == 200
    finally:
        service.close()
        server.close()
    assert len(requests_seen) == 2 and all(r.startswith(b"GET /v2/health/ready") for r in requests_seen)


def test_a_refused_connection_is_retried_and_reported_as_not_sent() -> None:
    service = HttpModelService(ModelServiceConfig(url=f"http://127.0.0.1:{free_port()}", connect_retries=2))
    with pytest.raises(ModelServiceUnavailable) as failure:
        service.infer("m", None, b"{}", "r")
    assert "refused" in str(failure.value) and failure.value.sent is False


def test_a_kept_alive_connection_the_server_drops_is_retried_once_on_a_new_one() -> None:
    """The keep-alive race: the server drops a reused connection without a byte of answer
    (RFC 9112, 9.3.1). The request goes once more, on a fresh connection, and answers."""
    server = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        first, _ = server.accept()
        seen.append(first.recv(65536))
        first.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        seen.append(first.recv(65536))
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        first.close()  # a reset, no answer
        second, _ = server.accept()
        with second:
            seen.append(second.recv(65536))
            second.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain")

    threading.Thread(target=serve, daemon=True).start()
    service = HttpModelService(ModelServiceConfig(url=f"http://127.0.0.1:{server.getsockname()[1]}"))
    try:
        assert service.get("/v2").body == b"ok"
        assert service.get("/v2").body == b"again"
    finally:
        service.close()
        server.close()
    assert len(seen) == 3


def endless_chunked_answer(conn: socket.socket) -> None:
    """A broken server: a chunked answer that never ends, until the client hangs up."""
    conn.recv(65536)
    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (8192, b"x" * 8192)
    try:
        while True:
            conn.sendall(chunk)
    except OSError:
        return  # the client closed the connection: what the test wants


def test_an_answer_larger_than_the_cap_is_refused_not_buffered(peer: Callable[[Script], int]) -> None:
    connection = Connection(
        "127.0.0.1",
        peer(endless_chunked_answer),
        connect_timeout=2,
        read_timeout=5,
        tls=None,
        max_answer_bytes=100_000,
    )
    connection.open()
    with pytest.raises(AnswerTooLarge, match="larger than 100000 bytes"):
        connection.exchange("POST", "/v2/models/m/infer", {}, b"{}")


def test_an_answer_within_the_cap_still_arrives(peer: Callable[[Script], int]) -> None:
    body = b"y" * 90_000

    def script(conn: socket.socket) -> None:
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        conn.recv(65536)

    connection = Connection(
        "127.0.0.1", peer(script), connect_timeout=2, read_timeout=5, tls=None, max_answer_bytes=100_000
    )
    connection.open()
    answer, _ = connection.exchange("GET", "/v2", {}, None)
    assert answer.body == body


def test_the_gateway_answers_502_naming_the_setting_when_the_answer_is_too_large(
    peer: Callable[[Script], int],
) -> None:
    port = peer(endless_chunked_answer)
    config = ModelServiceConfig(url=f"http://127.0.0.1:{port}", max_answer_bytes=100_000, connect_retries=0)
    service = HttpModelService(config)
    try:
        with pytest.raises(ModelServiceUnavailable) as failure:
            service.infer("m", None, b"{}", "r")
    finally:
        service.close()
    assert failure.value.status == 502 and failure.value.sent
    assert "gateway.model_service.max_answer_bytes" in str(failure.value)
