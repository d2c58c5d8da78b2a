"""Why a Kafka client cannot connect, said once and clearly: the client, the bootstrap servers,
the protocol, and the cause with a hint at the ``security`` key to check (TLS, SASL)."""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

from confluent_kafka import KafkaError

from modelsync.kafkasecurity import KafkaSecurity

_SASL_HINT = "authentication failed: check security.sasl (mechanism, username, password)"
HINTS = {
    KafkaError._SSL: "TLS failed: check security.tls (ca_file, verify_hostname) and that the listener is TLS",
    KafkaError._AUTHENTICATION: _SASL_HINT,
    KafkaError.SASL_AUTHENTICATION_FAILED: _SASL_HINT,
}


_TLS_FAILURE = re.compile(r"\bSSL")  # "SSL connection closed", "in state SSL_HANDSHAKE"


class ConnectionProblems:
    """librdkafka's ``error_cb`` and ``logger``: logs each kind of problem once (until
    :meth:`clear`), naming the client, the bootstrap servers and the protocol, and keeps the
    last one for the caller's own errors. librdkafka retries by itself; this only tells
    people why. A refusal after the handshake (a missing client certificate under TLS 1.3)
    reaches ``error_cb`` only as "brokers are down": the last connection failure librdkafka
    logged says the rest."""

    def __init__(
        self,
        client: str,
        bootstrap: str,
        security: KafkaSecurity,
        log: logging.Logger,
        *,
        quiet: bool = False,  # librdkafka's own lines at DEBUG: the caller words outages itself
    ) -> None:
        self.client = client
        self.quiet = quiet
        self.bootstrap = bootstrap
        self.protocol = security.protocol.value
        self.log = log
        self._lock = threading.Lock()
        self._logged: set[int] = set()
        self._failure: str | None = None  # librdkafka's last FAIL line
        self.last: str | None = None

    def __call__(self, error: KafkaError) -> None:
        message = self.describe(error)
        with self._lock:
            new = error.code() not in self._logged
            self._logged.add(error.code())
        if new:
            self.log.error("%s", message)

    def describe(self, error: KafkaError) -> str:
        """The sentence for ``error`` (also kept as :attr:`last`), without logging it."""
        text = error.str()
        with self._lock:
            if error.code() == KafkaError._ALL_BROKERS_DOWN and self._failure:
                text = f"{text}; last failure: {self._failure}"
            hint = HINTS.get(error.code())
            if hint is None and _TLS_FAILURE.search(text):
                hint = HINTS[KafkaError._SSL]
            where = f"{self.client}: cannot use Kafka at {self.bootstrap} (protocol {self.protocol})"
            self.last = f"{where}: {hint}: {text}" if hint else f"{where}: {text}"
            return self.last

    def clear(self) -> None:
        """The broker answered: the next problem is news again."""
        with self._lock:
            self.last = None
            self._failure = None
            self._logged.clear()

    def log_line(self, level: int, msg: str, *args: Any) -> None:
        """librdkafka's log lines (``facility [client] text``), passed on to our log."""
        if len(args) == 3 and args[0] == "FAIL":
            with self._lock:
                self._failure = str(args[2])
        self.log.log(logging.DEBUG if self.quiet else level, msg, *args)

    def settings(self) -> dict[str, Any]:
        return {"error_cb": self, "logger": _LibrdkafkaLog(self)}


class _LibrdkafkaLog:
    """What confluent-kafka calls ``log(level, msg, *args)`` on for every librdkafka line."""

    def __init__(self, problems: ConnectionProblems) -> None:
        self.log = problems.log_line
