"""Application factory, in the style of Flask's tutorial.

``gunicorn "webhook.app:create_app()"`` (see ``webhook/gunicorn_conf.py`` for the settings
the tests and images use).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask

from modelsync.config import Config
from modelsync.errors import ConfigError
from modelsync.intentbatch import GroupCommit
from modelsync.intents import IntentWriter
from modelsync.web import StartupError, new_app, refuse_encoded_slashes, refuse_from_head, register_errors
from webhook import auth, events, health, metrics, resync
from webhook.direct import DirectEvents
from webhook.intake import Intake

log = logging.getLogger(__name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    app, settings = new_app(__name__, test_config)
    _check_auth(settings)
    try:
        settings.check_state_dir()
    except ConfigError as exc:
        raise StartupError(f"configuration error: {exc}") from None

    app.config["MAX_CONTENT_LENGTH"] = settings.webhook.max_body_bytes
    writer = IntentWriter(settings.intents_dir)
    intake = Intake(settings, writer, GroupCommit(settings.intents_dir, _state_dir_check(settings)))
    app.extensions["intake"] = intake

    register_errors(app)
    refuse_encoded_slashes(app)
    refuse_from_head(app, auth.refuses_head(settings))
    metrics.register(app)
    app.register_blueprint(events.bp)
    app.register_blueprint(resync.bp)
    app.register_blueprint(health.bp)
    # MinIO's ordinary posts skip Flask's per-request work; every other request is Flask's.
    # So no hook of this app (before/after_request, errorhandler) runs for them: what one must
    # do for those posts too, direct.py does as well (the latency metric, the JSON 500).
    app.wsgi_app = DirectEvents(app.wsgi_app, intake, settings.webhook.max_body_bytes)  # type: ignore[method-assign]
    log.info("webhook ready: bucket=%s intents=%s", settings.minio.bucket, settings.intents_dir)
    return app


def _state_dir_check(settings: Config) -> Callable[[], None]:
    """``settings.check_state_dir`` before each new log segment or intent file, its paths built
    once: one lstat each."""
    paths = [
        str(d) for d in (settings.state_dir, settings.intents_dir, settings.failed_dir, settings.results_dir)
    ]

    def check() -> None:
        if any(os.path.islink(path) for path in paths):
            settings.check_state_dir()  # raises, naming the link

    return check


def _check_auth(settings: Config) -> None:
    if settings.webhook.auth_token:
        return
    if not settings.webhook.insecure_no_auth:
        raise StartupError(
            f"configuration error: {settings.source}: webhook.auth_token: is required "
            "(or set MODELSYNC_WEBHOOK_TOKEN / MODELSYNC_WEBHOOK_TOKEN_FILE, or "
            "webhook.insecure_no_auth: true for a trusted network)"
        )
    log.warning("webhook.insecure_no_auth is true: anyone who can reach this port can post events")
