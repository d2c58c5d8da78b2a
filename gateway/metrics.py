"""Prometheus metrics of the gateway, summed across gunicorn workers (multiprocess mode)."""

from __future__ import annotations

from flask import Flask, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Gauge,
    Histogram,
)

from modelsync.web import metrics_exposition

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 30)

REQUESTS = Counter(
    "modelsync_gateway_requests_total",
    "Inference requests answered, by model, version, provider and status",
    ["model", "version", "provider", "status"],
)
LATENCY = Histogram(
    "modelsync_gateway_request_duration_seconds",
    "Time from a request reaching the gateway to its answer",
    ["model", "version", "provider", "status"],
    buckets=_BUCKETS,
)
MODEL_SERVICE_LATENCY = Histogram(
    "modelsync_gateway_model_service_duration_seconds",
    "Time spent waiting on the model server",
    ["model", "version"],
    buckets=_BUCKETS,
)
QUEUE_DEPTH = Gauge(
    "modelsync_gateway_reporter_queue_depth",
    "Calls waiting in the reporter's in-memory queue",
    ["sink"],
    multiprocess_mode="livesum",
)
SENT = Counter("modelsync_gateway_reporter_sent_total", "Prediction records a sink took", ["sink"])
SPILLED = Counter(
    "modelsync_gateway_reporter_spilled_total",
    "Prediction records written to the spill file (queue full or sink down)",
    ["sink"],
)
REPLAYED = Counter(
    "modelsync_gateway_reporter_replayed_total", "Spilled prediction records delivered later", ["sink"]
)
REJECTED = Counter(
    "modelsync_gateway_reporter_rejected_total",
    "Prediction records the sink refused for good, kept in the spill's rejected/ directory",
    ["sink"],
)
DROPPED = Counter(
    "modelsync_gateway_reporter_dropped_total",
    "Prediction records lost (the spill could not be written). Must stay 0.",
    ["sink"],
)
KAFKA_MESSAGES = Counter(
    "modelsync_gateway_kafka_messages_total",
    "Kafka requests handled, by outcome (replied, dead_lettered)",
    ["outcome"],
)


def register(app: Flask) -> None:
    @app.get("/metrics")
    def metrics() -> Response:
        return Response(metrics_exposition(), mimetype=CONTENT_TYPE_LATEST)
