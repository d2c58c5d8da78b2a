"""The prediction gateway: REST and Kafka providers in front of the model server, every
prediction recorded by reporters that never block and never lose a record."""

import sys

# How the REST provider is served everywhere: the image, compose, make run and the tests.
GUNICORN_ARGS = ("-c", "python:gateway.gunicorn_conf", "gateway.app:create_app()")


def gunicorn_command() -> list[str]:
    return [sys.executable, "-m", "gunicorn", *GUNICORN_ARGS]
