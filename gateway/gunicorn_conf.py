"""gunicorn settings: ``gunicorn -c python:gateway.gunicorn_conf "gateway.app:create_app()"``.

gthread workers: a request is mostly a wait on the model server, which threads overlap.
The app is preloaded so a configuration error stops the master with one clear line; each
worker starts its reporters' sender threads itself (threads do not survive the fork) and
drains them on exit, so a graceful restart loses no record.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

bind = os.environ.get("MODELSYNC_GATEWAY_BIND", "0.0.0.0:9001")
worker_class = "gthread"
workers = int(os.environ.get("MODELSYNC_GATEWAY_WORKERS", "2"))
threads = int(os.environ.get("MODELSYNC_GATEWAY_THREADS", "16"))
preload_app = True
# gunicorn 25+ opens a control socket at one fixed path per user: two servers on a host
# (the webhook and the gateway, or parallel tests) would take it from each other.
control_socket_disable = True
keepalive = 75
graceful_timeout = 30
accesslog = os.environ.get("MODELSYNC_GATEWAY_ACCESS_LOG") or None
SWITCH_INTERVAL = float(os.environ.get("MODELSYNC_GATEWAY_SWITCH_INTERVAL", "0.0005"))

if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelsync-gateway-metrics-")


def post_fork(server: Any, worker: Any) -> None:
    import sys

    # The reporter's sender thread encodes records in batches. With CPython's default 5 ms
    # switch interval a request thread waiting for the GIL behind it waits up to 5 ms; 0.5 ms
    # bounds that wait for a small loss of throughput (measured in bench.gateway_overhead).
    sys.setswitchinterval(SWITCH_INTERVAL)

    from gateway.app import reporting_of

    # Now, not on the first request: a worker that gets no traffic still replays the spill.
    reporting_of(worker.app.wsgi()).start()


def worker_exit(server: Any, worker: Any) -> None:
    from gateway.app import reporting_of

    reporting_of(worker.app.wsgi()).close()


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
