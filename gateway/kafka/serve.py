"""The Kafka provider as a process: its reporters, metrics server and signals around the
worker's loop (``python -m gateway kafka`` calls :func:`serve`)."""

from __future__ import annotations

import logging

from gateway.factory import provider_predictor
from gateway.kafka.worker import KafkaWorker
from gateway.signals import stop_on_signals
from modelsync.config import Config

log = logging.getLogger(__name__)


def serve(settings: Config) -> int:
    """Run until SIGTERM or SIGINT; 2 for a configuration the provider cannot start with."""
    kafka = settings.gateway.kafka
    predictor = provider_predictor(settings, "kafka", kafka.enabled)
    if predictor is None:
        return 2

    if kafka.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(kafka.metrics_port)
        log.info("kafka provider: metrics on port %d", kafka.metrics_port)

    stop = stop_on_signals("kafka", "finishing the current batch")
    predictor.reporting.start()
    try:
        return KafkaWorker(kafka, predictor).run(stop)
    finally:
        predictor.reporting.close()
        predictor.service.close()
        log.info("kafka provider stopped")
