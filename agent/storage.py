"""The bucket, through the ``minio`` client: listings and streamed, verified downloads.

Every S3 failure becomes :class:`StorageError`; the caller decides how long to back off. An
object that changed since it was listed (412 on If-Match, 404, other size or MD5) is
:class:`ObjectChangedError` instead: an overwrite is not an outage.
Downloads stream to disk in fixed chunks, so memory does not grow with model size.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from xml.etree.ElementTree import ParseError

import urllib3
from minio.error import MinioException, S3Error
from urllib3 import BaseHTTPResponse

from agent.durability import DeferredFsync
from agent.writeback import WriteBehind
from modelsync import s3
from modelsync.config import MinioConfig
from modelsync.errors import ObjectChangedError, PublishError, StorageError

log = logging.getLogger(__name__)
CHUNK_BYTES = 1024 * 1024
# Below this a file's fsync is waited for in its download thread while the disk is quick, even
# with a DeferredFsync (see agent/durability.py, SLOW_FSYNC_SECONDS).
DEFER_FSYNC_MIN_BYTES = CHUNK_BYTES
READ_TIMEOUT_SECONDS = 8.0  # below the 10 s a SIGTERM may take, even when S3 hangs mid-read
Headers = dict[str, str | list[str] | tuple[str]]  # what minio's request_headers takes


@dataclass(frozen=True)
class RemoteObject:
    key: str
    etag: str
    size: int
    last_modified: float  # epoch seconds, 0 when unknown

    @property
    def md5(self) -> str | None:
        """The content MD5 when the ETag is one (not for multipart uploads)."""
        etag = self.etag.lower()
        if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag):
            return etag
        return None


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


class Cancelled(Exception):
    """The agent is stopping; a download was abandoned half-way."""


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else 0.0


class Bucket:
    def __init__(self, config: MinioConfig, pool_size: int = 10) -> None:
        self.name = config.bucket
        http = s3.http_pool(
            config,
            # A server silent that long is treated as down; the bound also keeps SIGTERM prompt
            # when S3 hangs (the loop checks the stop flag between reads).
            timeout=urllib3.Timeout(connect=5.0, read=READ_TIMEOUT_SECONDS),
            maxsize=pool_size,
            # A couple of quick retries for blips, none after a read timeout; outages are the
            # agent's backoff's business.
            retries=urllib3.Retry(total=2, read=0, backoff_factor=0.1, status_forcelist=[500, 502, 503, 504]),
        )
        self.client = s3.minio_client(config, http_client=http)

    def list(self, prefix: str = "") -> Iterator[RemoteObject]:
        try:
            for obj in self.client.list_objects(self.name, prefix=prefix, recursive=True):
                if obj.is_dir or obj.object_name is None:
                    continue
                yield RemoteObject(
                    key=obj.object_name,
                    etag=(obj.etag or "").strip('"'),
                    size=int(obj.size or 0),
                    last_modified=_epoch(obj.last_modified),
                )
        except (MinioException, urllib3.exceptions.HTTPError, OSError, ParseError, ValueError) as exc:
            # ParseError: something that is not S3 answered (a console port, a proxy page).
            raise StorageError(f"cannot list s3://{self.name}/{prefix}: {_describe(exc)}") from None

    @contextlib.contextmanager
    def _get(self, key: str, headers: Headers | None = None) -> Iterator[BaseHTTPResponse]:
        """One GET, its connection always returned to the pool, every failure a StorageError."""
        response = None
        try:
            response = self.client.get_object(self.name, key, request_headers=headers)
            yield response
        except S3Error as exc:
            if exc.code == "PreconditionFailed":
                raise ObjectChangedError(f"s3://{self.name}/{key} changed since it was listed") from None
            if exc.code == "NoSuchKey":
                raise ObjectChangedError(f"s3://{self.name}/{key} was deleted since it was listed") from None
            raise StorageError(f"cannot get s3://{self.name}/{key}: {_describe(exc)}") from None
        except (MinioException, urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageError(f"cannot get s3://{self.name}/{key}: {_describe(exc)}") from None
        finally:
            if response is not None:
                response.close()
                response.release_conn()

    @contextlib.contextmanager
    def stream(self, obj: RemoteObject) -> Iterator[BaseHTTPResponse]:
        """The object as listed, to read as a stream (If-Match: a change fails cleanly)."""
        with self._get(obj.key, {"If-Match": f'"{obj.etag}"'}) as response:
            yield response

    def read_small(self, key: str, limit: int = 1024 * 1024) -> bytes:
        with self._get(key) as response:
            data = response.read(limit + 1)
        if len(data) > limit:
            raise PublishError(f"s3://{self.name}/{key} is larger than {limit} bytes")
        return bytes(data)

    def download(
        self,
        obj: RemoteObject,
        dest: Path,
        stop: StopFlag,
        on_bytes: Callable[[int], None] | None = None,
        deferred: DeferredFsync | None = None,
    ) -> None:
        """Stream one object into ``dest``, verify size (and MD5), fsync. Raises on mismatch.

        With ``deferred`` the fsync of a file of at least ``DEFER_FSYNC_MIN_BYTES`` (of any file
        once the disk proved slow) is handed to its pool instead of waited for here; the caller
        waits for the pool before it publishes anything (agent/durability.py)."""
        digest = hashlib.md5(usedforsecurity=False) if obj.md5 else None
        # If-Match: the object we listed, or a clean failure if it changed meanwhile.
        with self._get(obj.key, {"If-Match": f'"{obj.etag}"'}) as response:
            written = _stream_to_file(response.stream(CHUNK_BYTES), dest, digest, stop, on_bytes, deferred)
        # A whole answer (urllib3 checks Content-Length) that is not the listed object: it was
        # replaced meanwhile by a server that ignores If-Match.
        if written != obj.size:
            raise ObjectChangedError(
                f"s3://{self.name}/{obj.key} changed since it was listed: got {written} bytes, "
                f"expected {obj.size}"
            )
        if digest is not None and digest.hexdigest() != obj.md5:
            raise ObjectChangedError(
                f"s3://{self.name}/{obj.key} changed since it was listed: MD5 does not match the ETag"
            )

    def reachable(self) -> bool:
        return self.problem() is None

    def problem(self) -> str | None:
        """Why the bucket cannot be used, in an operator's words (None when it can)."""
        try:
            exists = self.client.bucket_exists(self.name)
        except (MinioException, urllib3.exceptions.HTTPError, OSError, StorageError) as exc:
            return str(exc) if isinstance(exc, StorageError) else _describe(exc)
        return None if exists else f"bucket {self.name} does not exist"


def _stream_to_file(
    chunks: Iterator[bytes],
    dest: Path,
    digest: hashlib._Hash | None,
    stop: StopFlag,
    on_bytes: Callable[[int], None] | None = None,
    deferred: DeferredFsync | None = None,
) -> int:
    """Write the chunks to ``dest``; a local write failure is a PublishError naming the path."""
    written = 0
    try:
        with open(dest, "wb") as handle, WriteBehind(handle.fileno()) as behind:
            for chunk in chunks:
                if stop.is_set():
                    raise Cancelled(str(dest))
                handle.write(chunk)
                written += len(chunk)
                if behind.due(written):
                    handle.flush()  # the window must be in the kernel before its writeback
                    behind.advance(written)
                if on_bytes is not None:
                    on_bytes(len(chunk))
                if digest is not None:
                    digest.update(chunk)
            handle.flush()
            behind.close()
            if deferred is None:
                os.fsync(handle.fileno())
            elif written < DEFER_FSYNC_MIN_BYTES and not deferred.disk_is_slow:
                deferred.fsync_inline(handle.fileno())
            else:  # a duplicate shares the descriptor's error state: the fsync sees this file's errors
                deferred.submit(os.dup(handle.fileno()), dest)
    except OSError as exc:
        if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError)):
            raise
        raise PublishError(f"cannot write {dest}: {exc.strerror or type(exc).__name__}") from None
    return written


def _describe(exc: BaseException) -> str:
    if isinstance(exc, S3Error):
        return f"{exc.code} ({exc.message})"
    return s3.describe(exc)
