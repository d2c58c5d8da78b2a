"""The ``security`` block of every Kafka client: schema, checks, passwords from the environment,
and the one mapping to librdkafka settings (tests/gateway/test_kafka_security.py runs them
against real brokers)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trustme
import yaml

from modelsync.config import Config, load_config
from modelsync.errors import ConfigError
from modelsync.kafkasecurity import PLAINTEXT, librdkafka_settings, sink_password_env

BASE = {"minio": {"endpoint": "http://127.0.0.1:9000", "bucket_name": "models"}}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    cert = ca.issue_cert("client")
    paths = {
        "ca_file": directory / "ca.pem",
        "cert_file": directory / "c.pem",
        "key_file": directory / "c.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca_file"]))
    cert.cert_chain_pems[0].write_to_path(str(paths["cert_file"]))
    cert.private_key_pem.write_to_path(str(paths["key_file"]))
    return {k: str(v) for k, v in paths.items()}


def load(tmp_path: Path, gateway: dict[str, Any], env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "sync-config.yaml"
    path.write_text(yaml.safe_dump({**BASE, "gateway": gateway}))
    return load_config(path, env=env or {})


def provider(security: dict[str, Any]) -> dict[str, Any]:
    return {"kafka": {"enabled": True, "bootstrap_servers": "k:9093", "security": security}}


def test_every_field_maps_to_its_librdkafka_setting(tmp_path: Path, pem: dict[str, str]) -> None:
    security = {
        "protocol": "sasl_ssl",
        "sasl": {"mechanism": "SCRAM-SHA-256", "username": "gw", "password": "pw"},
        "tls": {**pem, "verify_hostname": False},
    }
    config = load(tmp_path, provider(security))
    assert librdkafka_settings(config.gateway.kafka.security) == {
        "security.protocol": "sasl_ssl",
        "sasl.mechanisms": "SCRAM-SHA-256",
        "sasl.username": "gw",
        "sasl.password": "pw",
        "ssl.ca.location": pem["ca_file"],
        "ssl.certificate.location": pem["cert_file"],
        "ssl.key.location": pem["key_file"],
        "ssl.endpoint.identification.algorithm": "none",
    }
    assert "pw" not in repr(config.gateway.kafka)


def test_defaults_plaintext_and_hostname_verification_on(tmp_path: Path) -> None:
    assert librdkafka_settings(load(tmp_path, provider({})).gateway.kafka.security) == {
        "security.protocol": "plaintext"
    }
    tls = load(tmp_path, provider({"protocol": "ssl"})).gateway.kafka.security
    assert librdkafka_settings(tls) == {
        "security.protocol": "ssl",
        "ssl.endpoint.identification.algorithm": "https",
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_password_from_the_environment_wins_and_file_form_is_stripped(tmp_path: Path, mechanism: str) -> None:
    sasl = {"mechanism": mechanism, "username": "gw", "password": "from-file"}
    gateway = provider({"protocol": "sasl_plaintext", "sasl": sasl})
    env_config = load(tmp_path, gateway, {"MODELSYNC_GATEWAY_KAFKA_PASSWORD": "from-env"})
    assert env_config.gateway.kafka.security.password.reveal() == "from-env"
    secret = tmp_path / "password"
    secret.write_text("from-secret-file\n")
    file_config = load(tmp_path, gateway, {"MODELSYNC_GATEWAY_KAFKA_PASSWORD_FILE": str(secret)})
    assert librdkafka_settings(file_config.gateway.kafka.security)["sasl.password"] == "from-secret-file"
    assert librdkafka_settings(file_config.gateway.kafka.security)["sasl.mechanisms"] == mechanism


def test_sink_password_from_its_own_variable(tmp_path: Path) -> None:
    sink = {
        "type": "kafka",
        "name": "audit-log",
        "topic": "t",
        "bootstrap_servers": "other:9093",
        "security": {"protocol": "sasl_ssl", "sasl": {"mechanism": "PLAIN", "username": "u"}},
    }
    env = {sink_password_env("audit-log"): "sink-pw"}
    assert sink_password_env("audit-log") == "MODELSYNC_KAFKA_SINK_AUDIT_LOG_PASSWORD"
    config = load(tmp_path, {"reporting": {"sinks": [sink]}}, env)
    assert config.gateway.reporting.sinks[0].security.password.reveal() == "sink-pw"


def test_a_sink_on_the_providers_cluster_takes_its_security(tmp_path: Path) -> None:
    sinks = [
        {"type": "kafka", "name": "same", "topic": "t"},
        {"type": "kafka", "name": "other", "topic": "t", "bootstrap_servers": "elsewhere:9092"},
    ]
    gateway = {**provider({"protocol": "ssl"}), "reporting": {"sinks": sinks}}
    same, other = load(tmp_path, gateway).gateway.reporting.sinks
    assert same.security.protocol.value == "ssl"
    assert other.security == PLAINTEXT, "another cluster does not get this cluster's credentials"


@pytest.mark.parametrize(
    ("security", "key", "words"),
    [
        (
            {"protocol": "sasl_ssl", "sasl": {"mechanism": "PLAIN", "username": "u"}},
            "sasl.password",
            "required",
        ),
        ({"protocol": "sasl_ssl"}, "sasl", "required with protocol sasl_ssl"),
        ({"protocol": "plaintext", "tls": {"verify_hostname": False}}, "tls", "protocol is plaintext"),
        ({"protocol": "ssl", "sasl": {"mechanism": "PLAIN", "username": "u"}}, "sasl", "protocol is ssl"),
        ({"protocol": "ssl", "tls": {"cert_file": "/etc/hostname"}}, "tls", "go together"),
        ({"protocol": "ssl", "tls": {"ca_file": "/etc/hostname"}}, "tls.ca_file", "no PEM certificate"),
        ({"protocol": "ssl", "tls": {"ca_file": "/nonexistent/ca.pem"}}, "tls.ca_file", "cannot read"),
        ({"protocol": "ssl", "tls": {"ca_file": "relative.pem"}}, "tls.ca_file", "Absolute path"),
        ({"protocol": "tls"}, "protocol", ""),
        ({"protocol": "sasl_ssl", "sasl": {"mechanism": "GSSAPI", "username": "u"}}, "sasl.mechanism", ""),
    ],
)
def test_a_wrong_block_names_its_key(tmp_path: Path, security: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, provider(security))
    assert caught.value.key == f"gateway.kafka.security.{key}"
    assert words in caught.value.message


def test_a_key_file_that_is_not_a_key_is_refused_without_showing_it(
    tmp_path: Path, pem: dict[str, str]
) -> None:
    tls = {"cert_file": pem["cert_file"], "key_file": pem["ca_file"]}
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, provider({"protocol": "ssl", "tls": tls}))
    assert caught.value.key == "gateway.kafka.security.tls.key_file"
    assert "no PEM private key" in caught.value.message and "BEGIN" not in str(caught.value)
