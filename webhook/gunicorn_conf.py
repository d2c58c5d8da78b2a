"""gunicorn settings: ``gunicorn -c python:webhook.gunicorn_conf "webhook.app:create_app()"``.

gthread workers: the request path is small CPU work (schema check) around an fsync that
releases the GIL, so threads overlap the disk waits and two processes use both cores.
The app is preloaded so a configuration error stops the master with one clear line.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

bind = os.environ.get("MODELSYNC_WEBHOOK_BIND", "0.0.0.0:8080")
worker_class = "gthread"
workers = int(os.environ.get("MODELSYNC_WEBHOOK_WORKERS", "2"))
threads = int(os.environ.get("MODELSYNC_WEBHOOK_THREADS", "8"))
preload_app = True
# gunicorn 25+ opens a control socket at one fixed path per user: two servers on a host
# (the webhook and the gateway, or parallel tests) would take it from each other.
control_socket_disable = True
graceful_timeout = 10
accesslog = os.environ.get("MODELSYNC_WEBHOOK_ACCESS_LOG") or None

# Metrics from all workers are summed through files in this directory.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="modelsync-metrics-")


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
