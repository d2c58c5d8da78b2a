"""SASL and TLS of every Kafka client: one ``security`` block shape, one mapping to librdkafka.

Three places hold a block (``gateway.kafka.security``, each Kafka sink's ``security``,
``events.kafka.security``); :func:`build_security` reads any of them and
:func:`librdkafka_settings` is the only code that turns one into client settings, so the
gateway's provider, its sink and the agent's event reader cannot drift apart. A password
comes from the file, or (winning) from an environment variable or the file it names
(``*_FILE``); it is a :class:`~modelsync.secret.Secret` and never logged.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from modelsync.errors import ConfigError
from modelsync.secret import Secret


class Protocol(Enum):
    """librdkafka's ``security.protocol``, spelt as the config file spells it."""

    PLAINTEXT = "plaintext"
    SSL = "ssl"
    SASL_PLAINTEXT = "sasl_plaintext"
    SASL_SSL = "sasl_ssl"

    @property
    def tls(self) -> bool:
        return self in (Protocol.SSL, Protocol.SASL_SSL)

    @property
    def sasl(self) -> bool:
        return self in (Protocol.SASL_PLAINTEXT, Protocol.SASL_SSL)


MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: Protocol = Protocol.PLAINTEXT
    mechanism: str | None = None  # one of MECHANISMS when protocol is sasl_*
    username: str | None = None
    password: Secret = field(default_factory=lambda: Secret(""))
    ca_file: Path | None = None  # PEM bundle trusted for the brokers' certificates
    cert_file: Path | None = None  # client certificate (mutual TLS), with key_file
    key_file: Path | None = None
    verify_hostname: bool = True


PLAINTEXT = KafkaSecurity()


def librdkafka_settings(security: KafkaSecurity) -> dict[str, str]:
    """The librdkafka settings of one ``security`` block (merged into every client's own)."""
    settings = {"security.protocol": security.protocol.value}
    if security.protocol.sasl:
        settings["sasl.mechanisms"] = str(security.mechanism)
        settings["sasl.username"] = str(security.username)
        settings["sasl.password"] = security.password.reveal()
    if security.protocol.tls:
        optional = {
            "ssl.ca.location": security.ca_file,
            "ssl.certificate.location": security.cert_file,
            "ssl.key.location": security.key_file,
        }
        settings.update({k: str(v) for k, v in optional.items() if v is not None})
        settings["ssl.endpoint.identification.algorithm"] = "https" if security.verify_hostname else "none"
    return settings


# -- reading a block ------------------------------------------------------------------------


def build_security(source: Path, key: str, raw: Mapping[str, Any] | None) -> KafkaSecurity:
    """One ``security`` block (already schema-checked), with what a schema cannot check:
    SASL needs a password, TLS files must be readable PEM, a key goes with a certificate."""
    if not raw:
        return PLAINTEXT
    protocol = Protocol(raw.get("protocol", "plaintext"))
    sasl = raw.get("sasl") or {}
    tls = raw.get("tls") or {}
    if sasl and not protocol.sasl:
        raise ConfigError(source, f"{key}.sasl", f"is set but protocol is {protocol.value} (use sasl_ssl)")
    if tls and not protocol.tls:
        raise ConfigError(source, f"{key}.tls", f"is set but protocol is {protocol.value} (use ssl)")
    if protocol.sasl and not sasl:
        raise ConfigError(source, f"{key}.sasl", f"is required with protocol {protocol.value}")
    password = str(sasl.get("password", "")).strip()
    if protocol.sasl and not password:
        raise ConfigError(source, f"{key}.sasl.password", "is required (or set its environment variable)")
    names = ("ca_file", "cert_file", "key_file")
    files = {name: Path(tls[name]) if tls.get(name) else None for name in names}
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise ConfigError(source, f"{key}.tls", "cert_file and key_file go together (mutual TLS)")
    for name, path in files.items():
        if path is not None:
            _check_pem(source, f"{key}.tls.{name}", path, certificates=name != "key_file")
    return KafkaSecurity(
        protocol=protocol,
        mechanism=sasl.get("mechanism"),
        username=sasl.get("username"),
        password=Secret(password),
        verify_hostname=bool(tls.get("verify_hostname", True)),
        **files,
    )


def _check_pem(source: Path, key: str, path: Path, *, certificates: bool) -> None:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise ConfigError(source, key, f"cannot read {path}: {exc.strerror}") from None
    if certificates:
        try:
            ssl.create_default_context(cadata=text)
        except (ssl.SSLError, ValueError):
            raise ConfigError(source, key, f"{path} holds no PEM certificate") from None
    elif "PRIVATE KEY-----" not in text:  # never the content: it is a secret
        raise ConfigError(source, key, f"{path} holds no PEM private key")


# -- passwords from the environment -----------------------------------------------------------

EnvReader = Callable[[str, str, Path, Mapping[str, str]], str]


def sink_password_env(name: str) -> str:
    """``MODELSYNC_KAFKA_SINK_<NAME>_PASSWORD``: the sink's name, upper case, ``_`` for the rest."""
    return f"MODELSYNC_KAFKA_SINK_{re.sub(r'[^A-Z0-9]', '_', name.upper())}_PASSWORD"


def password_locations(raw: Mapping[str, Any]) -> list[tuple[str, str, MutableMapping[str, Any]]]:
    """(environment variable, config key, the ``sasl`` mapping) of every block with SASL."""
    found: list[tuple[str, str, MutableMapping[str, Any]]] = []

    def add(env_name: str, key: str, parent: Any) -> None:
        block = parent.get("security") if isinstance(parent, dict) else None
        if isinstance(block, dict) and isinstance(block.get("sasl"), dict):
            found.append((env_name, f"{key}.security.sasl.password", block["sasl"]))

    gateway = _mapping(raw, "gateway")
    add("MODELSYNC_GATEWAY_KAFKA_PASSWORD", "gateway.kafka", gateway.get("kafka"))
    sinks = _mapping(gateway, "reporting").get("sinks")
    for index, sink in enumerate(sinks if isinstance(sinks, list) else []):
        if isinstance(sink, dict) and sink.get("type") == "kafka":
            name = str(sink.get("name", "kafka"))
            add(sink_password_env(name), f"gateway.reporting.sinks[{index}]", sink)
    add("MODELSYNC_EVENTS_KAFKA_PASSWORD", "events.kafka", _mapping(raw, "events").get("kafka"))
    return found


def _mapping(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key)
    return value if isinstance(value, dict) else {}


def apply_env_passwords(
    raw: Mapping[str, Any], source: Path, env: Mapping[str, str], read: EnvReader
) -> None:
    """Put each SASL password the environment holds into its block (the environment wins)."""
    for env_name, key, sasl in password_locations(raw):
        value = read(env_name, key, source, env)
        if value:
            sasl["password"] = value
