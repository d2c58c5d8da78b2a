"""The MinIO webhook receiver: bucket events in, durable intents out (its intent log,
``modelsync/intentlog.py``). It never downloads."""

import sys

# How the webhook is served everywhere: images, compose, Kubernetes, make run and the tests.
GUNICORN_ARGS = ("-c", "python:webhook.gunicorn_conf", "webhook.app:create_app()")


def gunicorn_command() -> list[str]:
    return [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS]
