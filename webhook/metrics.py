"""Prometheus metrics of the webhook, multi-process aware under gunicorn."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Histogram,
)

from modelsync.web import metrics_exposition

RECEIVED = Counter("modelsync_webhook_records_received_total", "Event records received")
ACCEPTED = Counter("modelsync_webhook_records_accepted_total", "Records written as durable intents")
IGNORED = Counter(
    "modelsync_webhook_records_ignored_total",
    "Records acknowledged but not acted upon",
    ["reason"],
)
REJECTED = Counter("modelsync_webhook_requests_rejected_total", "Requests answered with a 4xx", ["reason"])
RESYNCS = Counter("modelsync_webhook_resync_requests_total", "Resync intents written")
LATENCY = Histogram(
    "modelsync_webhook_request_duration_seconds",
    "Request latency by endpoint",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)


# One child per (endpoint, method), looked up once: labels() checks its arguments each call.
_latency_children: dict[tuple[str, str], Any] = {}


def observe_latency(endpoint: str, method: str, seconds: float) -> None:
    """One request's time, from the app's first step to its answer, under its route."""
    child = _latency_children.get((endpoint, method))
    if child is None:
        child = _latency_children[endpoint, method] = LATENCY.labels(endpoint=endpoint, method=method)
    child.observe(seconds)


def register(app: Flask) -> None:
    @app.before_request
    def _start_timer() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get("started")
        rule = request.url_rule
        if started is not None and rule is not None:
            observe_latency(rule.rule, request.method, time.perf_counter() - started)
        return response

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(metrics_exposition(), mimetype=CONTENT_TYPE_LATEST)
