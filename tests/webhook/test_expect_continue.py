"""``Expect: 100-continue`` against real gunicorn: a request the webhook refuses from its head
(no token, a body over the limit) gets that refusal instead of an invitation to send the body
(RFC 9110 10.1.1); an authorised one gets its 100 Continue, then its answer."""

from __future__ import annotations

import json

from tests.support.helpers import minio_event
from tests.support.intents import intents_on_disk
from tests.support.rawhttp import connect, read_answer, read_to_close
from tests.support.s3 import Bucket
from tests.support.volume import TOKEN, Volume


def expecting_head(length: int, authorization: str | None) -> bytes:
    head = "POST /minio/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    head += f"Authorization: {authorization}\r\n" if authorization else ""
    return f"{head}Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()


def test_an_unauthorised_request_is_401_without_a_100_continue(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook()
    body = json.dumps(minio_event(bucket.name, "m/1/model.bin")).encode()
    for authorization in (None, "Bearer wrong-token", f"Bearer {TOKEN}x"):
        with connect(webhook.url, timeout=5.0) as sock:
            sock.sendall(expecting_head(len(body), authorization))
            # The body is not sent: the client waits for the 100 or a final answer.
            answer, rest = read_answer(sock)
            assert answer.status == 401, (authorization, answer)
            assert "bearer token" in json.loads(answer.body)["error"]
            assert "connection: close" in answer.head.lower(), answer.head
            assert rest + read_to_close(sock) == b"", "the server must close: the body never came"
    assert not intents_on_disk(volume.intents)
    assert "Traceback" not in webhook.proc.log


def test_an_authorised_request_gets_100_continue_then_200(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook()
    body = json.dumps(minio_event(bucket.name, "m/1/model.bin")).encode()
    with connect(webhook.url, timeout=5.0) as sock:
        for _ in range(2):  # and again on the same, kept-alive, connection
            sock.sendall(expecting_head(len(body), f"Bearer {TOKEN}"))
            interim, rest = read_answer(sock)
            assert (interim.status, rest) == (100, b""), interim
            sock.sendall(body)
            final, rest = read_answer(sock)
            assert final.status == 200, final
    assert len(intents_on_disk(volume.intents)) == 2


def test_a_body_over_the_limit_is_413_without_a_100_continue(volume: Volume, start_webhook) -> None:
    volume.settings["webhook"]["max_body_bytes"] = 4096
    volume.write()
    webhook = start_webhook()
    with connect(webhook.url, timeout=5.0) as sock:
        sock.sendall(expecting_head(4097, f"Bearer {TOKEN}"))
        answer, _ = read_answer(sock)
    assert answer.status == 413 and "4096" in json.loads(answer.body)["error"], answer
