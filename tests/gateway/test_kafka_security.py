"""Secured Kafka for the gateway's two Kafka clients (the provider and the Kafka sink), against
real brokers: Tansu behind a mutual-TLS proxy, and Tansu requiring SASL."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from devstack.broker import Broker
from gateway.errors import SinkError
from gateway.sinks.kafka import KafkaSink
from modelsync.config import load_config
from modelsync.gatewayconfig import SinkConfig
from tests.support.gateway import infer_body
from tests.support.helpers import free_port, wait_for
from tests.support.kafka import reply
from tests.support.kafkasecure import (
    Pki,
    TlsBroker,
    server_context,
)
from tests.support.processes import Process, child_env
from tests.support.tlsproxy import TlsProxy
from tests.support.volume import Volume

PASSWORD = "pa55-never-shown"  # a test value, asserted absent from every output


def sink_config(volume: Volume, bootstrap: str, security: dict[str, Any] | None, **env: str) -> SinkConfig:
    """The sink as the configuration file and the environment define it (schema included)."""
    sink: dict[str, Any] = {"type": "kafka", "name": "scores", "topic": f"scores-{uuid.uuid4().hex[:8]}"}
    sink |= {"bootstrap_servers": bootstrap, "timeout_seconds": 4}
    if security is not None:
        sink["security"] = security
    volume.settings["gateway"] = {"reporting": {"sinks": [sink]}}
    volume.write()
    return load_config(volume.config_path, env=env).gateway.reporting.sinks[0]


def send_one(config: SinkConfig) -> None:
    sink = KafkaSink(config)
    try:
        sink.send([b'{"n": 1}\n'])
    finally:
        sink.close()


# -- TLS ----------------------------------------------------------------------------------------


def test_sink_delivers_over_mutual_tls(volume: Volume, tls_broker: TlsBroker, pki: Pki) -> None:
    config = sink_config(volume, tls_broker.broker.bootstrap, pki.security())
    tls_broker.broker.create_topics(str(config.get("topic")))
    send_one(config)
    got = tls_broker.broker.read(str(config.get("topic")), 1, timeout=15)
    assert [m.value() for m in got] == [b'{"n": 1}']


def test_sink_without_its_client_certificate_is_refused_with_a_clear_error(
    volume: Volume, tls_broker: TlsBroker, pki: Pki
) -> None:
    """The proxy requires a client certificate: only cert_file/key_file reaching the client
    let the previous test through."""
    security = {"protocol": "ssl", "tls": {"ca_file": str(pki.ca_file)}}
    config = sink_config(volume, tls_broker.broker.bootstrap, security)
    with pytest.raises(SinkError) as caught:
        send_one(config)
    message = str(caught.value)
    assert f"kafka at {tls_broker.broker.bootstrap}" in message
    assert f"kafka sink 'scores': cannot use Kafka at {tls_broker.broker.bootstrap} (protocol ssl)" in message
    assert "last failure:" in message and "Disconnected" in message, "the broker's side of it"
    assert caught.value.undelivered == [b'{"n": 1}\n'], "kept to be spilled, not lost"


def test_hostname_verification_is_on_unless_turned_off(
    volume: Volume, tls_broker: TlsBroker, pki: Pki
) -> None:
    """A second front whose certificate names another host: refused while verify_hostname is
    on (the default), taken once it is off (same CA, so only the name check differs)."""
    other = TlsProxy(free_port(), tls_broker.broker.port, server_context(pki, "kafka.elsewhere.test"))
    other.start()
    try:
        bootstrap = f"127.0.0.1:{other.port}"
        strict = sink_config(volume, bootstrap, pki.security())
        with pytest.raises(SinkError) as caught:
            send_one(strict)
        assert "TLS failed" in str(caught.value) and bootstrap in str(caught.value)
        relaxed = sink_config(volume, bootstrap, pki.security(verify_hostname=False))
        tls_broker.broker.create_topics(str(relaxed.get("topic")))
        send_one(relaxed)
    finally:
        other.stop()


def test_tls_client_against_a_plaintext_broker_names_the_servers_and_the_problem(
    volume: Volume, broker: Broker, pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    config = sink_config(volume, broker.bootstrap, {"protocol": "ssl", "tls": {"ca_file": str(pki.ca_file)}})
    with caplog.at_level(logging.ERROR, logger="gateway.sinks.kafka"), pytest.raises(SinkError) as caught:
        send_one(config)
    expected = f"cannot use Kafka at {broker.bootstrap} (protocol ssl): TLS failed"
    assert expected in str(caught.value) and "SSL_HANDSHAKE" in str(caught.value)
    assert sum(expected in r.getMessage() for r in caplog.records) == 1, "logged once, not per retry"


# -- SASL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_sink_authenticates_with_sasl_and_a_refusal_is_clear_and_hides_the_password(
    volume: Volume, sasl_broker: Broker, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The password comes from MODELSYNC_KAFKA_SINK_SCORES_PASSWORD; the broker runs the SCRAM
    exchange and refuses the user (Tansu 0.6 keeps no credentials in memory)."""
    security = {"protocol": "sasl_plaintext", "sasl": {"mechanism": mechanism, "username": "scorer"}}
    config = sink_config(
        volume, sasl_broker.bootstrap, security, MODELSYNC_KAFKA_SINK_SCORES_PASSWORD=f" {PASSWORD}\n"
    )
    assert config.security.password.reveal() == PASSWORD and PASSWORD not in repr(config)
    with caplog.at_level(logging.DEBUG), pytest.raises(SinkError) as caught:
        send_one(config)
    message = str(caught.value)
    assert f"cannot use Kafka at {sasl_broker.bootstrap} (protocol sasl_plaintext)" in message
    assert "authentication failed: check security.sasl" in message and "SCRAM" in message
    assert PASSWORD not in message and PASSWORD not in caplog.text


def test_without_sasl_the_same_broker_fails_differently(volume: Volume, sasl_broker: Broker) -> None:
    """Control: a client without SASL never gets to authenticate, so the previous test's
    SCRAM refusal shows that mechanism, username and password reached the handshake."""
    with pytest.raises(SinkError) as caught:
        send_one(sink_config(volume, sasl_broker.bootstrap, None))
    assert "authentication failed" not in str(caught.value)


# -- the Kafka provider ---------------------------------------------------------------------------


def test_provider_answers_over_mutual_tls(
    gateway_volume: Volume,
    tls_broker: TlsBroker,
    pki: Pki,
    start_kafka_worker: Callable[..., Process],
) -> None:
    tag = uuid.uuid4().hex[:8]
    requests_topic, replies_topic = f"requests-{tag}", f"replies-{tag}"
    tls_broker.broker.create_topics(requests_topic, replies_topic, f"dead-{tag}")
    gateway_volume.settings["gateway"]["kafka"] = {
        "enabled": True,
        "bootstrap_servers": tls_broker.broker.bootstrap,
        "group_id": f"group-{tag}",
        "request_topic": requests_topic,
        "reply_topic": replies_topic,
        "dead_letter_topic": f"dead-{tag}",
        "session_timeout_ms": 3000,
        "security": pki.security(),
    }
    gateway_volume.write()
    headers = {"correlation-id": "tls-1", "model": "adder"}
    tls_broker.broker.send(requests_topic, json.dumps(infer_body()).encode(), headers)
    start_kafka_worker()
    answers = [reply(m) for m in tls_broker.broker.read(replies_topic, 1, timeout=30)]
    assert [(a.correlation, a.headers["status"]) for a in answers] == [("tls-1", "200")]


def test_provider_names_the_servers_and_the_problem_when_sasl_is_refused(
    gateway_volume: Volume, sasl_broker: Broker
) -> None:
    gateway_volume.settings["gateway"]["kafka"] = {
        "enabled": True,
        "bootstrap_servers": sasl_broker.bootstrap,
        "security": {"protocol": "sasl_plaintext", "sasl": {"mechanism": "PLAIN", "username": "gw"}},
    }
    gateway_volume.write()
    env = child_env(gateway_volume, MODELSYNC_GATEWAY_KAFKA_PASSWORD=PASSWORD)
    proc = Process([sys.executable, "-m", "gateway", "kafka"], env, gateway_volume.root / "worker-sasl.log")
    try:
        expected = f"kafka provider: cannot use Kafka at {sasl_broker.bootstrap} (protocol sasl_plaintext)"
        wait_for(lambda: expected in proc.log or not proc.alive(), 30, what="the provider's error")
        assert expected in proc.log and "authentication failed" in proc.log, proc.log
        assert PASSWORD not in proc.log
    finally:
        assert proc.stop(timeout=40) == 0, proc.log
