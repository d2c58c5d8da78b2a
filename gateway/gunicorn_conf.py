"""gunicorn settings: ``gunicorn -c python:gateway.gunicorn_conf "gateway.app:create_app()"``.

gthread workers: a request is mostly a wait on the model server, which threads overlap.
The app is preloaded so a configuration error stops the master with one clear line; each
worker starts its reporters' sender threads itself (threads do not survive the fork) and
drains them on exit, so a graceful restart loses no record.
"""

from __future__ import annotations

import os
from typing import Any

from modelsync import gunicorn_common

globals().update(
    gunicorn_common.settings(
        "GATEWAY",
        gunicorn_common.Defaults(
            port=9001,
            threads=16,
            graceful_timeout=30,
            keepalive=75,
            head_timeout=10.0,
            # Inference bodies can be large (gateway.rest.max_body_bytes is 64 MiB).
            body_timeout=60.0,
            buffer_bytes=8 * 1024 * 1024,
        ),
    )
)
gunicorn_common.metrics_dir("modelsync-gateway-metrics-")
child_exit = gunicorn_common.child_exit
SWITCH_INTERVAL = float(os.environ.get("MODELSYNC_GATEWAY_SWITCH_INTERVAL", "0.0005"))


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
