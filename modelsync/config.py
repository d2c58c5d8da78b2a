"""The typed, frozen configuration shared by the webhook, the agent and the gateway.

The YAML layout is the original polling sidecar's (``minio.*``, ``sync.*``, ``ovms.*``), so a
user migrates by swapping the image. Everything is validated once, here, at start-up; an
error names the file and the key.
"""

from __future__ import annotations

import math
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from minio import Minio

from modelsync import schema
from modelsync.errors import ConfigError, SchemaViolation
from modelsync.gatewayconfig import GatewayConfig, build_gateway
from modelsync.kafkasecurity import PLAINTEXT, KafkaSecurity, apply_env_passwords, build_security
from modelsync.secret import Secret

DEFAULT_CONFIG_PATH = "/config/sync-config.yaml"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024

# Secrets from the environment win over the file; ``NAME_FILE`` points at a mounted secret.
ENV_SECRETS = {
    "MINIO_ACCESS_KEY": ("minio", "access_key"),
    "MINIO_SECRET_KEY": ("minio", "secret_key"),
    "MODELSYNC_WEBHOOK_TOKEN": ("webhook", "auth_token"),
    "AWS_SESSION_TOKEN": ("minio", "session_token"),
}

_EMPTY: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True)
class MinioConfig:
    endpoint: str  # host[:port], scheme removed
    secure: bool
    bucket: str
    access_key: Secret = field(default_factory=lambda: Secret(""))
    secret_key: Secret = field(default_factory=lambda: Secret(""))
    session_token: Secret = field(default_factory=lambda: Secret(""))
    region: str | None = None
    ca_file: Path | None = None  # PEM bundle trusted for the endpoint's certificate
    tls_skip_verify: bool = False
    sts_endpoint: str | None = None  # for web identity; AWS's regional STS when None
    instance_role: bool = False  # fall back to the instance metadata service
    metadata_endpoint: str | None = None  # the instance metadata service, when not the usual one

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://{self.endpoint}"


@dataclass(frozen=True)
class SyncConfig:
    interval: float = 30.0
    models_path: Path = Path("/models")
    log_level: str = "INFO"
    log_format: str = "text"
    settle_seconds: float = 2.0
    download_concurrency: int = 4
    max_attempts: int = 5
    heartbeat_seconds: float = 2.0
    metrics_port: int | None = None
    progress_seconds: float = 10.0
    min_free_bytes: int = 64 * 1024 * 1024  # what a download must leave free on the volume
    # OpenVINO pre-flight of each staged version (agent/preflight.py): off, read or compile.
    preflight: str = "read"
    preflight_timeout_seconds: float = 60.0
    preflight_memory_mb: int = 4096


@dataclass(frozen=True)
class OvmsConfig:
    config_path: Path
    base_path: Path
    model_name: str | None = None
    rest_url: str | None = None
    reload_timeout_seconds: float = 10.0
    model_defaults: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    models: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: _EMPTY)

    def settings_for(self, model: str) -> dict[str, Any]:
        """Extra OVMS keys for one model: the defaults, overridden by the model's own."""
        return {**self.model_defaults, **self.models.get(model, {})}


@dataclass(frozen=True)
class WebhookConfig:
    auth_token: Secret | None = None
    insecure_no_auth: bool = False
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    agent_stale_seconds: float = 30.0
    max_wait_seconds: float = 60.0


@dataclass(frozen=True)
class KafkaEventsConfig:
    """Fleet mode: every agent reads MinIO's notifications from this topic (all partitions)."""

    bootstrap_servers: str
    topic: str = "minio-events"
    security: KafkaSecurity = PLAINTEXT  # SASL/TLS (modelsync/kafkasecurity.py)


@dataclass(frozen=True)
class EventsConfig:
    kafka: KafkaEventsConfig | None = None


@dataclass(frozen=True)
class Config:
    source: Path
    minio: MinioConfig
    sync: SyncConfig
    ovms: OvmsConfig
    webhook: WebhookConfig
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    events: EventsConfig | None = None

    @property
    def kafka_events(self) -> KafkaEventsConfig | None:
        """The fleet's event topic, or None in webhook mode."""
        return self.events.kafka if self.events is not None else None

    @property
    def state_dir(self) -> Path:
        return self.sync.models_path / ".modelsync"

    @property
    def intents_dir(self) -> Path:
        return self.state_dir / "intents"

    @property
    def failed_dir(self) -> Path:
        return self.state_dir / "failed"

    @property
    def results_dir(self) -> Path:
        return self.state_dir / "results"

    @property
    def status_path(self) -> Path:
        return self.state_dir / "status.json"

    def check_state_dir(self) -> None:
        """Refuse a ``.modelsync`` (or one of its directories) that is a symbolic link: state,
        status, intents and results would be written wherever it points, outside the volume."""
        for directory in (self.state_dir, self.intents_dir, self.failed_dir, self.results_dir):
            if directory.is_symlink():
                raise ConfigError(
                    self.source,
                    "sync.models_path",
                    f"{directory} is a symbolic link; modelsync keeps its state only in a real "
                    "directory inside the models volume (remove the link)",
                )


def config_path_from_env(env: Mapping[str, str] = os.environ) -> Path:
    return Path(env.get("CONFIG_PATH") or DEFAULT_CONFIG_PATH)


def load_config(path: Path | str | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Read, merge secrets into, validate and freeze the configuration."""
    source = Path(path) if path is not None else config_path_from_env(env)
    raw = _read_yaml(source)
    _check_text(source, raw)
    _apply_env_secrets(raw, source, env)
    apply_env_passwords(raw, source, env, _env_secret)  # each Kafka client's SASL password
    try:
        schema.check(schema.SYNC_CONFIG, raw)
    except SchemaViolation as exc:
        raise ConfigError(source, exc.field, exc.message) from None
    return _build(source, raw)


def _read_yaml(source: Path) -> dict[str, Any]:
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(source, "", "config file not found (set CONFIG_PATH)") from None
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(source, "", f"not UTF-8 text (byte {exc.start})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(source, "", f"not valid YAML{where}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, "", f"expected a mapping at the top, got {type(data).__name__}")
    return data


def _apply_env_secrets(raw: dict[str, Any], source: Path, env: Mapping[str, str]) -> None:
    for name, (section, key) in ENV_SECRETS.items():
        value = _env_secret(name, f"{section}.{key}", source, env)
        if value:
            target = raw.setdefault(section, {})
            if not isinstance(target, dict):
                raise ConfigError(source, section, "expected a mapping")
            target[key] = value


def _env_secret(name: str, key: str, source: Path, env: Mapping[str, str]) -> str:
    """``NAME``, else the file ``NAME_FILE`` names; both stripped of surrounding white space
    (a trailing newline from ``echo`` or a secret file would otherwise never authenticate)."""
    value = env.get(name, "")
    if not value.strip() and env.get(f"{name}_FILE"):
        file_path = Path(env[f"{name}_FILE"])
        try:
            value = file_path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, key, f"cannot read {name}_FILE={file_path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            # Never the content: a secret must not reach a terminal or a log, even garbled.
            raise ConfigError(source, key, f"{name}_FILE={file_path} is not UTF-8 text") from None
        name = f"{name}_FILE"
    if not _encodable(value):
        raise ConfigError(source, key, f"{name} is not valid UTF-8 text")
    return value.strip()


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: undecodable bytes in the environment, or \ud800
        return False
    return True


def _check_text(source: Path, value: Any, key: str = "") -> None:
    """Every string in the file must be real text: a lone surrogate (YAML ``"\\ud800"``) would
    otherwise pass the schema and fail much later, in a path, a header or a log line. Likewise
    every number must be finite: YAML's ``.nan`` and ``.inf`` satisfy any JSON Schema bound
    check vacuously or not at all, and would reach config.json as ``NaN``, which OVMS cannot parse."""
    if isinstance(value, str) and not _encodable(value):
        raise ConfigError(source, key, "contains a character that is not valid UTF-8 (a lone surrogate)")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(source, key, f"{value} is not a finite number")
    if isinstance(value, dict):
        for child_key, child in value.items():
            child_name = str(child_key) if _encodable(str(child_key)) else repr(child_key)
            path = f"{key}.{child_name}" if key else child_name
            _check_text(source, child_key, path)
            _check_text(source, child, path)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _check_text(source, child, f"{key}[{index}]")


def _normalise_level(level: str) -> str:
    level = level.upper()
    return "WARNING" if level == "WARN" else level


def _split_endpoint(minio: Mapping[str, Any]) -> tuple[str, bool]:
    endpoint = str(minio["endpoint"]).rstrip("/")
    secure = bool(minio.get("secure", False))
    for scheme, tls in (("http://", False), ("https://", True)):
        if endpoint.startswith(scheme):
            # The scheme is the more specific statement, and the sidecar's files carry both.
            return endpoint[len(scheme) :], tls
    return endpoint, secure


def _frozen(value: Any) -> Any:
    if isinstance(value, dict):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """A plain, mutable copy of a frozen mapping (for writing it into JSON)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def _check_model_settings(source: Path, key: str, settings: Mapping[str, Any]) -> None:
    # Per-model settings end up inside config.json, so OVMS's own schema is the judge.
    trial = {"model_config_list": [{"config": {"name": "m", "base_path": "/m", **settings}}]}
    try:
        schema.check(schema.OVMS_CONFIG, trial)
    except SchemaViolation as exc:
        inner = exc.field.removeprefix("model_config_list[0].config").lstrip(".")
        raise ConfigError(source, f"{key}.{inner}" if inner else key, exc.message) from None


def _build_minio(source: Path, minio_raw: Mapping[str, Any]) -> MinioConfig:
    endpoint, secure = _split_endpoint(minio_raw)
    try:  # the client's own rules (no user info, no query, a valid port and IPv6 literal)
        Minio(endpoint, secure=secure)
    except ValueError as exc:
        raise ConfigError(source, "minio.endpoint", f"not a usable S3 endpoint: {exc}") from None
    ca_file = Path(minio_raw["ca_file"]) if minio_raw.get("ca_file") else None
    for key in ("ca_file", "tls_skip_verify"):
        if minio_raw.get(key) and not secure:
            raise ConfigError(
                source, f"minio.{key}", "is set but the endpoint is not TLS (https:// or minio.secure)"
            )
    if ca_file is not None:
        _check_ca_file(source, ca_file)
    return MinioConfig(
        endpoint=endpoint,
        secure=secure,
        bucket=minio_raw["bucket_name"],
        access_key=Secret(str(minio_raw.get("access_key", "")).strip()),
        secret_key=Secret(str(minio_raw.get("secret_key", "")).strip()),
        session_token=Secret(str(minio_raw.get("session_token", "")).strip()),
        region=minio_raw.get("region"),
        ca_file=ca_file,
        tls_skip_verify=bool(minio_raw.get("tls_skip_verify", False)),
        sts_endpoint=minio_raw.get("sts_endpoint"),
        instance_role=bool(minio_raw.get("instance_role", False)),
        metadata_endpoint=minio_raw.get("metadata_endpoint"),
    )


def _check_ca_file(source: Path, ca_file: Path) -> None:
    try:
        ssl.create_default_context(cafile=str(ca_file))
    except (ssl.SSLError, ValueError):  # SSLError first: it is an OSError too
        raise ConfigError(source, "minio.ca_file", f"{ca_file} holds no PEM certificate") from None
    except OSError as exc:
        raise ConfigError(source, "minio.ca_file", f"cannot read {ca_file}: {exc.strerror}") from None


def _build(source: Path, raw: Mapping[str, Any]) -> Config:
    minio = _build_minio(source, raw["minio"])
    sync_raw = raw.get("sync") or {}
    sync = SyncConfig(
        **{k: v for k, v in sync_raw.items() if k != "models_path" and k != "log_level"},
        models_path=Path(sync_raw.get("models_path", "/models")),
        log_level=_normalise_level(str(sync_raw.get("log_level", "INFO"))),
    )
    ovms_raw = dict(raw.get("ovms") or {})
    defaults = ovms_raw.pop("model_defaults", {}) or {}
    models = ovms_raw.pop("models", {}) or {}
    _check_model_settings(source, "ovms.model_defaults", defaults)
    for name, settings in models.items():
        _check_model_settings(source, f"ovms.models.{name}", {**defaults, **settings})
    ovms = OvmsConfig(
        config_path=Path(ovms_raw.pop("config_path", sync.models_path / "config.json")),
        base_path=Path(ovms_raw.pop("base_path", sync.models_path)),
        model_defaults=_frozen(defaults),
        models=_frozen(models),
        **ovms_raw,
    )
    webhook_raw = dict(raw.get("webhook") or {})
    token = str(webhook_raw.pop("auth_token", "") or "").strip()
    webhook = WebhookConfig(auth_token=Secret(token) if token else None, **webhook_raw)
    gateway = build_gateway(source, raw.get("gateway"))
    return Config(
        source=source,
        minio=minio,
        sync=sync,
        ovms=ovms,
        webhook=webhook,
        gateway=gateway,
        events=_build_events(source, raw.get("events")),
    )


def _build_events(source: Path, raw: Mapping[str, Any] | None) -> EventsConfig | None:
    if raw is None:
        return None
    kafka_raw = dict(raw["kafka"]) if raw.get("kafka") is not None else None
    if kafka_raw is None:
        return EventsConfig()
    security = build_security(source, "events.kafka.security", kafka_raw.pop("security", None))
    return EventsConfig(kafka=KafkaEventsConfig(**kafka_raw, security=security))
