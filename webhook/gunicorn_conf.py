"""gunicorn settings: ``gunicorn -c python:webhook.gunicorn_conf "webhook.app:create_app()"``.

gthread workers: the request path is small CPU work (schema check) around an fsync that
releases the GIL, so threads overlap the disk waits and two processes use both cores. The
settings both servers share, and their environment variables, are in
``modelsync/gunicorn_common.py``.
"""

from __future__ import annotations

from modelsync import gunicorn_common

globals().update(
    gunicorn_common.settings(
        "WEBHOOK",
        gunicorn_common.Defaults(
            port=8080,
            threads=8,
            graceful_timeout=10,
            keepalive=2,
            head_timeout=10.0,
            # MinIO sends a whole event at once; 1 MiB (the default body limit) takes far less.
            body_timeout=10.0,
            buffer_bytes=1024 * 1024 + 64 * 1024,
        ),
    )
)
gunicorn_common.metrics_dir("modelsync-metrics-")
child_exit = gunicorn_common.child_exit
