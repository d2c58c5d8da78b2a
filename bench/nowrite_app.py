"""Benchmark 2's third server: the webhook whole, except the durable write of its intents.

``gunicorn -c python:webhook.gunicorn_conf "bench.nowrite_app:create_app()"``: the webhook's own
app factory, with its group commit replaced by one that serialises the intents and writes
nothing. It answers exactly as the webhook does, so the difference between the two is the
durable write alone (one synchronous write per group commit, and the waits around it), and the
difference between it and bare Flask is everything else the webhook does per event. Never a
way to run the webhook: it acknowledges events it does not keep.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from flask import Flask

from modelsync.intents import Intent
from webhook.app import create_app as create_webhook


class _NoWrite:
    commits = 0

    def commit(self, items: Sequence[Intent]) -> None:
        json.dumps(list(items), separators=(",", ":")).encode()


def create_app() -> Flask:
    app = create_webhook()
    app.extensions["intake"].group = _NoWrite()
    return app
