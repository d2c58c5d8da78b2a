"""Where the webhook's own Python goes, timed in-process (no gunicorn, no threads, no disk).

    python -m bench.webhook_inproc [--repeats 7] [--requests 3000]

Each WSGI app is called directly with the environ gunicorn would give it (Flask's test client
would add more CPU of its own than the differences measured here). The benchmark's MinIO
bodies go to bare Flask and to the webhook app (its group commit replaced by
``bench/nowrite_app.py``'s, so nothing is written): as MinIO posts them (the direct route,
``webhook/direct.py``), chunked (so through the Flask view), and then directly with one
piece of its work switched off at a time: the intent's schema check, every compiled schema
check, the Prometheus counters (the latency histogram stays). Variants are interleaved,
``--repeats`` rounds; the report is the median CPU milliseconds per request and the spread.
The switched-off variants are measurements only: the webhook never runs that way.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from flask import Flask

from bench import harness
from bench.bare_app import create_app as create_bare
from bench.stack import TOKEN, stack_settings
from bench.webhook_throughput import _NoS3
from modelsync import fastschema, schema
from tests.support.helpers import minio_event

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication as WSGIApp

HEADERS = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}


class _Silent:
    def labels(self, **_labels: str) -> _Silent:
        return self

    def inc(self, *_amount: float) -> None:
        pass


@contextlib.contextmanager
def patched(target: Any, name: str, value: Any) -> Iterator[None]:
    original = getattr(target, name)
    setattr(target, name, value)
    try:
        yield
    finally:
        setattr(target, name, original)


@contextlib.contextmanager
def no_intent_check() -> Iterator[None]:
    check = fastschema.check

    def events_only(name: str, instance: Any) -> None:
        if name != schema.INTENT:
            check(name, instance)

    with patched(fastschema, "check", events_only):
        yield


@contextlib.contextmanager
def no_schema_checks() -> Iterator[None]:
    with patched(fastschema, "check", lambda _name, _instance: None):
        yield


@contextlib.contextmanager
def no_metrics() -> Iterator[None]:
    from webhook import metrics  # imported once PROMETHEUS_MULTIPROC_DIR is set, as under gunicorn

    with contextlib.ExitStack() as stack:
        for counter in ("RECEIVED", "ACCEPTED", "IGNORED", "REJECTED"):
            stack.enter_context(patched(metrics, counter, _Silent()))
        yield


def environ(body: bytes, chunked: bool) -> dict[str, Any]:
    """What gunicorn hands the app for one post (a chunked one has no length)."""
    framing = {"HTTP_TRANSFER_ENCODING": "chunked"} if chunked else {"CONTENT_LENGTH": str(len(body))}
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/minio/events",
        "RAW_URI": "/minio/events",
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1:8080",
        "HTTP_AUTHORIZATION": HEADERS["Authorization"],
        "CONTENT_TYPE": HEADERS["Content-Type"],
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        **framing,
    }


def post(app: WSGIApp, body: bytes, chunked: bool) -> str:
    status: list[str] = []
    answer = app(environ(body, chunked), lambda line, _headers, _exc=None: status.append(line))
    b"".join(answer)
    getattr(answer, "close", lambda: None)()
    return status[0]


def cpu_ms_per_request(app: WSGIApp, bodies: list[bytes], requests: int, chunked: bool) -> float:
    for body in bodies:  # warm up
        post(app, body, chunked)
    started = time.process_time()
    for i in range(requests):
        status = post(app, bodies[i % len(bodies)], chunked)
    assert status.startswith("200"), status
    return (time.process_time() - started) / requests * 1000


def main() -> None:
    parser = harness.parser(__doc__ or "")
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    repeats = max(args.repeats, 7)
    workdir = Path(tempfile.mkdtemp(prefix="modelsync-inproc-"))
    models = workdir / "models"
    models.mkdir()
    config = workdir / "sync-config.yaml"
    config.write_text(yaml.safe_dump(stack_settings(_NoS3(), "bench-events", models)))
    os.environ["CONFIG_PATH"] = str(config)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(workdir)
    keys = [f"model{i % 16}/{1 + i // 16}/part-{i:03d}.bin" for i in range(256)]
    bodies = [json.dumps(minio_event("bench-events", key, size=1024)).encode() for key in keys]
    # The webhook's metrics run in multiprocess mode, as under gunicorn: import it only now.
    from bench.nowrite_app import create_app as create_no_write

    bare, webhook = create_bare(), create_no_write()
    Switch = Callable[[], contextlib.AbstractContextManager[None]]
    variants: dict[str, tuple[Flask, bool, Switch]] = {
        "bare Flask": (bare, False, contextlib.nullcontext),
        "webhook, no write": (webhook, False, contextlib.nullcontext),
        "  chunked, so through the Flask view": (webhook, True, contextlib.nullcontext),
        "  without the intent's schema check": (webhook, False, no_intent_check),
        "  without any schema check": (webhook, False, no_schema_checks),
        "  without the Prometheus counters": (webhook, False, no_metrics),
    }
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_no in range(repeats):
        order = list(variants) if round_no % 2 == 0 else list(reversed(variants))
        for name in order:
            app, chunked, switched_off = variants[name]
            with switched_off():
                samples[name].append(cpu_ms_per_request(app, bodies, args.requests, chunked))
    for name, values in samples.items():
        print(f"{name:40} {statistics.median(values):.3f} ms ({min(values):.3f}..{max(values):.3f})")


if __name__ == "__main__":
    main()
