"""The original polling sidecar's log lines, emitted where the same thing happens.

Operators who migrate by swapping the image keep the log-based alerts they wrote for it, so
these messages keep its exact wording (its "No models found in MinIO bucket" warning is the
start of modelsync's own, in ``agent/reconcile.py``) (``date - model_sync - LEVEL - message``, see
``modelsync/logsetup.py``). Each line says the same as one of modelsync's own, more detailed
lines; they live together here so that nobody "improves" one of them by accident.
"""

from __future__ import annotations

import logging

log = logging.getLogger("agent")


def starting(interval: float) -> None:
    log.info("Starting continuous model sync with %gs interval", interval)


def connected(endpoint_url: str) -> None:
    log.info("Connected to MinIO at %s", endpoint_url)


def failed_to_connect(reason: str) -> None:
    # Every failed listing or download, with modelsync's own detail after the sidecar's words.
    log.error("Failed to connect to MinIO: %s", reason)


def discovered(versions: int) -> None:
    # The sidecar counted model versions ("models" in its words), once per full listing.
    log.info("Discovered %d models in MinIO", versions)


def updated(filename: str, label: str) -> None:
    log.info("Updated %s for model %s", filename, label)


def saved_config(models: int) -> None:
    log.info("Saved OVMS config with %d models", models)


def permission_denied(path: str) -> None:
    log.error("Permission denied: '%s'", path)
