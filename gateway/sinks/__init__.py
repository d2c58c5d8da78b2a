"""Sinks: where prediction records go. Each takes a batch of JSON lines whole, or raises
:class:`~gateway.errors.SinkError` and the reporter spills what did not arrive."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from modelsync.config import MinioConfig
from modelsync.gatewayconfig import SinkConfig


class Sink(Protocol):
    name: str

    def send(self, lines: Sequence[bytes]) -> None: ...

    def close(self) -> None: ...


def build_sink(config: SinkConfig, minio: MinioConfig) -> Sink:
    # Imported here so a gateway without a Kafka sink never loads librdkafka.
    if config.type == "file":
        from gateway.sinks.file import FileSink

        return FileSink(config)
    if config.type == "kafka":
        from gateway.sinks.kafka import KafkaSink

        return KafkaSink(config)
    if config.type == "http":
        from gateway.sinks.http import HttpSink

        return HttpSink(config)
    if config.type == "bucket":
        from gateway.sinks.bucket import BucketSink

        return BucketSink(config, minio)
    raise ValueError(f"unknown sink type {config.type!r}")
