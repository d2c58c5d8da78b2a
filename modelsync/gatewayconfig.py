"""The ``gateway:`` section of the configuration file, typed and frozen.

The schema (``schemas/sync-config.schema.json``) has already judged the raw mapping; this
module only fills in defaults and checks what a schema cannot (that a Kafka sink or provider
has brokers to talk to).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from modelsync.errors import ConfigError
from modelsync.kafkasecurity import PLAINTEXT, KafkaSecurity, build_security

DEFAULT_SPILL_DIR = Path("/var/lib/modelsync-gateway/spill")
DEFAULT_MAX_ANSWER_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class ModelServiceConfig:
    url: str = "http://127.0.0.1:8000"
    timeout_seconds: float = 30.0
    connect_timeout_seconds: float = 2.0
    connect_retries: int = 2
    max_answer_bytes: int = DEFAULT_MAX_ANSWER_BYTES  # a larger answer is a 502, not buffered
    protocol: str = "http"  # "http": KServe v2 REST at url; "grpc": KServe v2 gRPC at grpc_target
    grpc_target: str = "127.0.0.1:9000"


@dataclass(frozen=True)
class RestConfig:
    enabled: bool = True
    max_body_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class KafkaConfig:
    enabled: bool = False
    bootstrap_servers: str = ""
    group_id: str = "modelsync-gateway"
    request_topic: str = "inference-requests"
    reply_topic: str = "inference-replies"
    dead_letter_topic: str = "inference-dead-letter"
    batch_size: int = 100
    concurrency: int = 8
    max_attempts: int = 5
    session_timeout_ms: int = 10000
    max_poll_interval_ms: int = 300000
    default_model: str | None = None
    reply_to_topics: tuple[str, ...] = ()  # topics a request's reply-to header may name
    metrics_port: int | None = None
    security: KafkaSecurity = PLAINTEXT


@dataclass(frozen=True)
class GrpcConfig:
    enabled: bool = False
    bind: str = "0.0.0.0:9003"
    max_message_bytes: int = 64 * 1024 * 1024  # a larger request is RESOURCE_EXHAUSTED
    threads: int = 16
    health_poll_seconds: float = 2.0
    metrics_port: int | None = None


@dataclass(frozen=True)
class SinkConfig:
    """One destination of prediction records; ``options`` holds the type's own keys."""

    type: str
    name: str
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    security: KafkaSecurity = PLAINTEXT  # a Kafka sink's SASL/TLS

    def get(self, key: str, default: Any = None) -> Any:
        return self.options.get(key, default)


@dataclass(frozen=True)
class ReportingConfig:
    inputs: str | float = "none"  # "none", "all", or a sample rate in (0, 1]
    queue_size: int = 10000
    batch_size: int = 500
    flush_seconds: float = 0.2
    retry_seconds: float = 1.0
    spill_dir: Path = DEFAULT_SPILL_DIR
    sinks: tuple[SinkConfig, ...] = ()

    @property
    def input_rate(self) -> float:
        if self.inputs == "none":
            return 0.0
        if self.inputs == "all":
            return 1.0
        return float(self.inputs)


@dataclass(frozen=True)
class GatewayConfig:
    model_service: ModelServiceConfig = field(default_factory=ModelServiceConfig)
    rest: RestConfig = field(default_factory=RestConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    grpc: GrpcConfig = field(default_factory=GrpcConfig)
    reporting: ReportingConfig = field(default_factory=ReportingConfig)


def build_gateway(source: Path, raw: Mapping[str, Any] | None) -> GatewayConfig:
    raw = raw or {}
    service = ModelServiceConfig(**(raw.get("model_service") or {}))
    try:
        urlsplit(service.url).port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError as exc:
        raise ConfigError(source, "gateway.model_service.url", str(exc)) from None
    kafka_raw = dict(raw.get("kafka") or {})
    security = build_security(source, "gateway.kafka.security", kafka_raw.pop("security", None))
    kafka = KafkaConfig(
        **{**kafka_raw, "reply_to_topics": tuple(kafka_raw.get("reply_to_topics", ()))}, security=security
    )
    if kafka.enabled and not kafka.bootstrap_servers:
        raise ConfigError(source, "gateway.kafka.bootstrap_servers", "is required when kafka.enabled is true")
    return GatewayConfig(
        model_service=service,
        rest=RestConfig(**(raw.get("rest") or {})),
        kafka=kafka,
        grpc=GrpcConfig(**(raw.get("grpc") or {})),
        reporting=_reporting(source, raw.get("reporting") or {}, kafka),
    )


def _reporting(source: Path, raw: Mapping[str, Any], kafka: KafkaConfig) -> ReportingConfig:
    options = {k: v for k, v in raw.items() if k not in ("sinks", "spill_dir")}
    sinks = tuple(_sink(source, index, item, kafka) for index, item in enumerate(raw.get("sinks") or []))
    names = [sink.name for sink in sinks]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(
                source,
                f"gateway.reporting.sinks[{index}].name",
                f"{name!r} is used twice (each sink spills to its own directory, named after it)",
            )
    return ReportingConfig(**options, spill_dir=Path(raw.get("spill_dir", DEFAULT_SPILL_DIR)), sinks=sinks)


def _sink(source: Path, index: int, raw: Mapping[str, Any], kafka: KafkaConfig) -> SinkConfig:
    options = {k: v for k, v in raw.items() if k not in ("type", "name", "security")}
    security = PLAINTEXT
    if raw["type"] == "kafka":
        # A sink on the provider's cluster (no bootstrap_servers of its own) also takes its
        # security block; a sink on another cluster has its own.
        key = f"gateway.reporting.sinks[{index}]"
        inherits = "bootstrap_servers" not in options
        options.setdefault("bootstrap_servers", kafka.bootstrap_servers)
        if not options["bootstrap_servers"]:
            raise ConfigError(
                source, f"{key}.bootstrap_servers", "is required (or set gateway.kafka.bootstrap_servers)"
            )
        own = raw.get("security")
        security = build_security(source, f"{key}.security", own) if own or not inherits else kafka.security
    name = raw.get("name", raw["type"])
    return SinkConfig(type=raw["type"], name=name, options=MappingProxyType(options), security=security)
