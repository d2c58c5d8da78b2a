"""Bucket sink: batches of prediction records as JSON-lines objects (the training-data loop).

Objects are named ``<prefix><yyyy>/<mm>/<dd>/<hh>/<first prediction id>.jsonl``: a batch
that is sent again (after a timeout, or a replay that was cut short) lands on the same name,
so it replaces itself instead of appearing twice.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import urllib3
from minio.error import MinioException
from urllib3.exceptions import HTTPError

from gateway.errors import SinkError
from modelsync import s3
from modelsync.config import MinioConfig
from modelsync.gatewayconfig import SinkConfig


class BucketSink:
    def __init__(self, config: SinkConfig, minio: MinioConfig) -> None:
        self.name = config.name
        self.bucket = str(config.get("bucket"))
        self.prefix = str(config.get("prefix", "predictions/"))
        # Short timeouts and no retries of its own: a stuck upload must not hold the sender
        # past a shutdown; the reporter's spill and backoff do the retrying.
        http = s3.http_pool(
            minio, timeout=urllib3.Timeout(connect=5.0, read=30.0), retries=urllib3.Retry(total=0), maxsize=2
        )
        self._client = s3.minio_client(minio, http_client=http)

    def object_name(self, lines: Sequence[bytes]) -> str:
        first = json.loads(lines[0])
        stamp = str(first["responseTimestamp"])  # 2026-11-26T20:15:03.123Z
        day, hour = stamp[:10].replace("-", "/"), stamp[11:13]
        return f"{self.prefix}{day}/{hour}/{first['predictionId']}.jsonl"

    def send(self, lines: Sequence[bytes]) -> None:
        if not lines:
            return
        data = b"".join(lines)
        name = self.object_name(lines)
        try:
            self._client.put_object(
                self.bucket, name, io.BytesIO(data), len(data), content_type="application/x-ndjson"
            )
        except (MinioException, HTTPError, OSError) as exc:
            raise SinkError(f"upload of s3://{self.bucket}/{name} failed: {exc}") from None

    def close(self) -> None:
        pass
