"""Application factory of the REST provider: ``gunicorn "gateway.app:create_app()"``
(``gateway/gunicorn_conf.py`` holds the settings the images and tests use)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Flask

from gateway import metrics, rest
from gateway.direct import DirectInfer
from gateway.errors import SpillError
from gateway.factory import build_predictor
from gateway.inference import Predictor
from gateway.reporting import Reporting
from modelsync.web import StartupError, new_app, refuse_encoded_slashes, refuse_from_head, register_errors

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app, settings = new_app(__name__, test_config)
    gateway = settings.gateway
    if not gateway.rest.enabled:
        raise StartupError(f"configuration error: {settings.source}: gateway.rest.enabled is false")
    app.config["MAX_CONTENT_LENGTH"] = gateway.rest.max_body_bytes
    try:
        app.extensions["predictor"] = build_predictor(settings)
    except SpillError as exc:
        raise StartupError(
            f"configuration error: {settings.source}: gateway.reporting.spill_dir: {exc}"
        ) from None
    register_errors(app)
    refuse_encoded_slashes(app)
    refuse_from_head(app, rest.refuses_head)  # Expect: 100-continue gets the 4xx, not a 100
    metrics.register(app)
    app.register_blueprint(rest.bp)
    # Ordinary infer posts skip Flask's per-request work; all else is Flask's (gateway/direct.py).
    app.wsgi_app = DirectInfer(app.wsgi_app, app.extensions["predictor"], gateway.rest.max_body_bytes)  # type: ignore[method-assign]
    sinks = ", ".join(s.name for s in gateway.reporting.sinks) or "none"
    log.info("gateway ready: model service %s, sinks: %s", gateway.model_service.url, sinks)
    return app


def reporting_of(app: Flask) -> Reporting:
    """The app's reporters: gunicorn's hooks start them in each worker (threads do not survive
    the fork) and close them when it exits."""
    predictor: Predictor = app.extensions["predictor"]
    return predictor.reporting
