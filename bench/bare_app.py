"""The ceiling for benchmark 2: a bare Flask endpoint under the webhook's gunicorn settings.

``gunicorn -c python:webhook.gunicorn_conf "bench.bare_app:create_app()"``: reads the body and
answers 200 with a small JSON document, as the webhook does, but checks and writes nothing.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/minio/events")
    def receive() -> tuple[Response, int]:
        request.get_data(cache=False)
        return jsonify(accepted=1, ignored=0, intents=[]), 200

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    return app
