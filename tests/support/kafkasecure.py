"""Secured Kafka for the tests: a throw-away CA (trustme), Tansu behind a mutual-TLS proxy, and
Tansu with SASL required. Shared by the gateway's tests and the agent's event-reader tests."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from devstack.broker import Broker
from modelsync.kafkasecurity import KafkaSecurity, Protocol, librdkafka_settings
from tests.support.helpers import free_port
from tests.support.tlsproxy import TlsProxy


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path  # the client's
    key_file: Path
    ca: trustme.CA

    def security(self, **changes: Any) -> dict[str, Any]:
        """The config file's ``security`` block for mutual TLS, with ``changes`` to ``tls``."""
        tls = {"ca_file": str(self.ca_file), "cert_file": str(self.cert_file), "key_file": str(self.key_file)}
        return {"protocol": "ssl", "tls": {**tls, **changes}}


def make_pki(directory: Path) -> Pki:
    ca = trustme.CA()
    client = ca.issue_cert("modelsync-client")
    paths = Pki(directory / "ca.pem", directory / "client.pem", directory / "client.key", ca)
    ca.cert_pem.write_to_path(str(paths.ca_file))
    client.cert_chain_pems[0].write_to_path(str(paths.cert_file))
    client.private_key_pem.write_to_path(str(paths.key_file))
    return paths


def server_context(pki: Pki, *names: str) -> ssl.SSLContext:
    """The proxy's side: a certificate for ``names``, and client certificates required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki.ca.issue_cert(*names).configure_cert(context)
    pki.ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


@dataclass
class TlsBroker:
    broker: Broker
    proxy: TlsProxy
    pki: Pki

    def stop(self) -> None:
        self.proxy.stop()
        self.broker.stop()


def start_tls_broker(directory: Path, pki: Pki) -> TlsBroker:
    """Tansu on a plaintext port, advertising the proxy's port: every client goes through TLS."""
    proxy_port = free_port()
    security = KafkaSecurity(
        protocol=Protocol.SSL, ca_file=pki.ca_file, cert_file=pki.cert_file, key_file=pki.key_file
    )
    broker = Broker(
        directory / "tansu-tls.log", free_port(), proxy_port, client=librdkafka_settings(security)
    )
    broker.start()
    proxy = TlsProxy(proxy_port, broker.port, server_context(pki, "localhost", "127.0.0.1"))
    proxy.start()
    return TlsBroker(broker, proxy, pki)


def start_sasl_broker(directory: Path) -> Broker:
    """Tansu with ``--authentication``: no client gets anything done without SASL. (Tansu 0.6's
    in-memory storage keeps no SCRAM credentials, so no login can succeed: the tests show the
    handshake happens and fails clearly, and that the password is never shown.)"""
    broker = Broker(directory / "tansu-sasl.log", free_port(), args=("--authentication",))
    broker.start()
    return broker


# Fixtures (a pytest plugin: tests/conftest.py lists this module), one broker per test module.
@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[TlsBroker]:
    server = start_tls_broker(tmp_path_factory.mktemp("tansu-tls"), pki)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    server = start_sasl_broker(tmp_path_factory.mktemp("tansu-sasl"))
    yield server
    server.stop()
