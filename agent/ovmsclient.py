"""OVMS's REST API: force a config reload, read which versions became AVAILABLE."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

import urllib3

from modelsync.errors import OvmsReloadError, OvmsUnreachable

__all__ = ["OvmsClient", "OvmsReloadError", "OvmsUnreachable"]
log = logging.getLogger(__name__)


class OvmsClient:
    def __init__(self, rest_url: str, timeout: float) -> None:
        self.base = rest_url.rstrip("/")
        self.http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=min(timeout, 3.0), read=timeout), retries=False
        )

    def reload(self) -> Literal["reloaded", "unchanged"]:
        """POST /v1/config/reload; a short outcome.

        Raises OvmsUnreachable when OVMS does not answer, OvmsReloadError when it answers an error.
        """
        try:
            response = self.http.request("POST", f"{self.base}/v1/config/reload")
        except urllib3.exceptions.HTTPError as exc:
            raise OvmsUnreachable(f"OVMS reload at {self.base} failed: {type(exc).__name__}") from None
        if response.status == 201:
            return "reloaded"
        if response.status == 200:
            return "unchanged"
        raise OvmsReloadError(
            f"OVMS reload answered {response.status}: {response.data[:300].decode(errors='replace')}"
        )

    def version_states(self) -> dict[str, dict[int, str]]:
        """GET /v1/config -> {model: {version: state}}; empty when OVMS cannot be asked."""
        try:
            response = self.http.request("GET", f"{self.base}/v1/config")
            document: dict[str, Any] = json.loads(response.data) if response.status == 200 else {}
        except (urllib3.exceptions.HTTPError, ValueError) as exc:
            log.warning("cannot read OVMS model status from %s: %s", self.base, type(exc).__name__)
            return {}
        try:
            return {
                str(model): {
                    int(entry["version"]): str(entry.get("state"))
                    for entry in info.get("model_version_status", [])
                }
                for model, info in document.items()
            }
        except (AttributeError, KeyError, TypeError, ValueError):
            log.warning("OVMS at %s answered GET /v1/config in an unknown shape", self.base)
            return {}
