"""Building the gateway's parts from the configuration (shared by every provider)."""

from __future__ import annotations

import sys

from gateway.errors import SpillError
from gateway.inference import Predictor
from gateway.modelservice import HttpModelService, ModelService
from gateway.reporting import Reporting
from gateway.sinkreporter import SinkReporter
from gateway.sinks import build_sink
from gateway.spill import Spill
from modelsync.config import Config
from modelsync.gatewayconfig import ModelServiceConfig, SinkConfig

BUCKET_BATCH_RECORDS = 1000
BUCKET_BATCH_SECONDS = 10.0


def build_reporter(config: Config, sink: SinkConfig) -> SinkReporter:
    reporting = config.gateway.reporting
    bucket = sink.type == "bucket"
    spill = Spill(reporting.spill_dir / sink.name)
    spill.prepare()  # fail at start-up, with the path, rather than on the first request
    return SinkReporter(
        build_sink(sink, config.minio),
        spill,
        queue_size=reporting.queue_size,
        # A bucket sink's batch is one object: its own size and age limits decide.
        batch_size=int(sink.get("batch_records", BUCKET_BATCH_RECORDS if bucket else reporting.batch_size)),
        flush_seconds=float(
            sink.get("batch_seconds", BUCKET_BATCH_SECONDS if bucket else reporting.flush_seconds)
        ),
        retry_seconds=reporting.retry_seconds,
    )


def build_predictor(config: Config) -> Predictor:
    reporting = config.gateway.reporting
    reporters = Reporting([build_reporter(config, sink) for sink in reporting.sinks], reporting.input_rate)
    return Predictor(build_model_service(config.gateway.model_service), reporters)


def build_model_service(config: ModelServiceConfig) -> ModelService:
    if config.protocol == "grpc":
        from gateway.grpc.client import GrpcModelService  # grpcio loads only where it is used

        return GrpcModelService(config)
    return HttpModelService(config)


def provider_predictor(config: Config, provider: str, enabled: bool) -> Predictor | None:
    """The predictor a provider process (``kafka``, ``grpc``) serves with; None once the
    configuration error it cannot start with is printed (its caller exits 2)."""
    if not enabled:
        print(f"configuration error: {config.source}: gateway.{provider}.enabled is false", file=sys.stderr)
        return None
    try:
        return build_predictor(config)
    except SpillError as exc:
        print(f"configuration error: {config.source}: gateway.reporting.spill_dir: {exc}", file=sys.stderr)
        return None
