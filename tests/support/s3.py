"""The tests' S3: moto's threaded server and a bucket on it, reached with the tests' credentials."""

from __future__ import annotations

import io
from dataclasses import dataclass

from minio import Minio
from moto.server import ThreadedMotoServer

from tests.support.helpers import free_port

ACCESS_KEY = "test-access-AKIA7SECRET"
SECRET_KEY = "test-secret-key-do-not-log-9f8e7d"


class S3Server:
    """moto's threaded server, restartable on the same port (its data lives on in-process)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: ThreadedMotoServer | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@dataclass
class Bucket:
    client: Minio
    name: str

    def put(self, key: str, data: bytes) -> str:
        result = self.client.put_object(self.name, key, io.BytesIO(data), len(data))
        return str(result.etag).strip('"')

    def delete(self, key: str) -> None:
        self.client.remove_object(self.name, key)
