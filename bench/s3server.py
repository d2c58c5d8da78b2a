"""The benchmarks' S3 endpoint: moto's server in a process of its own.

In its own process it does not share the benchmark driver's GIL. It is a Python server: where
it is the bottleneck, the benchmark says so and compares against the ``minio`` client on the
same server.
"""

from __future__ import annotations

import io
import re
import secrets
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from minio import Minio

from bench.procs import ACCESS_KEY, PY, SECRET_KEY, Proc, clean_env
from tests.support.helpers import free_port, wait_for


class S3:
    """moto's server in its own process; its access log counts the GETs per key."""

    GET_LINE = re.compile(r'"GET /([^/?\s]+)/([^?\s]+)(\?[^\s]*)? HTTP/1\.[01]" (\d+)')

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "moto.log"
        self.proc = Proc(
            [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)], clean_env(), self.log_path
        )
        wait_for(self._up, 30, 0.05, "moto server")
        self.client = self.make_client()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self) -> bool:
        if not self.proc.alive():
            raise RuntimeError(f"moto server exited:\n{self.log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def make_client(self) -> Minio:
        return Minio(f"127.0.0.1:{self.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)

    def bucket(self, prefix: str = "bench") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.client.make_bucket(name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> str:
        result = self.client.put_object(bucket, key, io.BytesIO(data), len(data))
        return str(result.etag).strip('"')

    def put_many(self, bucket: str, items: dict[str, bytes], threads: int = 8) -> None:
        client = self.make_client()
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda kv: client.put_object(bucket, kv[0], io.BytesIO(kv[1]), len(kv[1])), items.items()
                )
            )

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def gets_since(self, offset: int, bucket: str) -> dict[str, int]:
        """Object GETs (not listings) answered 2xx since ``offset`` of the access log, per key."""
        counts: dict[str, int] = {}
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                match = self.GET_LINE.search(raw.decode("utf-8", "replace"))
                if match and match.group(1) == bucket and match.group(4).startswith("2"):
                    counts[match.group(2)] = counts.get(match.group(2), 0) + 1
        return counts

    def stop(self) -> None:
        self.proc.stop()
