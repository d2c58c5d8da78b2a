"""The gunicorn settings the webhook and the gateway share; each ``gunicorn_conf.py`` takes
them with ``globals().update(settings(...))`` and adds its own hooks.

Every setting can be changed through ``MODELSYNC_<APP>_<NAME>`` (``APP`` is WEBHOOK or
GATEWAY): ``BIND``, ``WORKERS``, ``THREADS``, ``ACCESS_LOG``, and the slow-client bounds
``HEAD_TIMEOUT``, ``BODY_TIMEOUT`` (seconds) and ``BUFFER_BYTES`` (see
:mod:`modelsync.httpworker`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from typing import Any, NoReturn

from modelsync.httpworker import worker_class


@dataclass(frozen=True)
class Defaults:
    port: int
    threads: int
    graceful_timeout: int
    keepalive: int
    head_timeout: float
    body_timeout: float
    buffer_bytes: int


def _refuse(name: str, value: str, expected: str) -> NoReturn:
    """One line and exit status 2, as every configuration error (gunicorn has not logged yet)."""
    print(f"configuration error: environment: {name}={value!r}: expected {expected}", file=sys.stderr)
    raise SystemExit(2)


def _number(name: str, default: float, kind: type[int] | type[float]) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    expected = f"a positive {'integer' if kind is int else 'number'}"
    try:
        value = kind(raw)
    except ValueError:
        _refuse(name, raw, expected)
    if not 0 < value < float("inf"):
        _refuse(name, raw, expected)
    return value


def settings(app: str, defaults: Defaults) -> dict[str, Any]:
    """gunicorn's settings for ``app`` (WEBHOOK, GATEWAY) from its environment variables."""
    prefix = f"MODELSYNC_{app}_"
    return {
        "bind": os.environ.get(f"{prefix}BIND") or f"0.0.0.0:{defaults.port}",
        "workers": _number(f"{prefix}WORKERS", 2, int),
        "threads": _number(f"{prefix}THREADS", defaults.threads, int),
        # Requests are received whole by the worker's event loop, within these bounds, before a
        # thread takes them: slow clients cannot hold the threads (modelsync/httpworker.py).
        "worker_class": worker_class(
            head_timeout=_number(f"{prefix}HEAD_TIMEOUT", defaults.head_timeout, float),
            body_timeout=_number(f"{prefix}BODY_TIMEOUT", defaults.body_timeout, float),
            buffer_bytes=_number(f"{prefix}BUFFER_BYTES", defaults.buffer_bytes, int),
        ),
        "keepalive": defaults.keepalive,
        "graceful_timeout": defaults.graceful_timeout,
        # The app is preloaded so a configuration error stops the master with one clear line.
        "preload_app": True,
        # gunicorn 25+ opens a control socket at one fixed path per user: two servers on a host
        # (the webhook and the gateway, or parallel tests) would take it from each other.
        "control_socket_disable": True,
        "accesslog": os.environ.get(f"{prefix}ACCESS_LOG") or None,
    }


def metrics_dir(prefix: str) -> None:
    """Metrics from all workers are summed through files in this directory."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=prefix)


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
