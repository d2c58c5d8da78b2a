"""The S3 client both the agent (models in) and the gateway's bucket sink (predictions out) use."""

from __future__ import annotations

from typing import Any

from minio import Minio

from modelsync.config import MinioConfig


def minio_client(config: MinioConfig, http_client: Any = None) -> Minio:
    return Minio(
        config.endpoint,
        access_key=config.access_key.reveal(),
        secret_key=config.secret_key.reveal(),
        secure=config.secure,
        region=config.region,
        http_client=http_client,
    )
