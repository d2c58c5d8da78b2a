"""Versions refused (by the pre-flight, or by OVMS itself), kept until their bytes change.

``.modelsync/refused.json`` remembers each refused version with the signature (paths, ETags,
sizes) of the bucket listing that was refused, so neither the reconcile nor a restart
downloads and publishes the same bytes again. A listing with another signature (a new upload)
is tried again; a version gone from the bucket is forgotten. Each refusal is shown in
``status.json`` (``refused``, and the version's state), ``agent status``, ``/readyz`` and the
``modelsync_agent_refused_version`` metric.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from agent import metrics
from agent.pending import Signature
from agent.status import StatusReporter
from modelsync import atomic

log = logging.getLogger(__name__)


class RefusedBy(StrEnum):
    PREFLIGHT = "preflight"
    OVMS = "ovms"


@dataclass(frozen=True)
class Refusal:
    by: RefusedBy
    reason: str
    files: list[tuple[str, str, int]]  # the refused listing: (path, etag, size)
    at: float
    settings: str = ""  # the pre-flight's settings when it refused (agent/preflight.py)

    def signature(self) -> Signature:
        return frozenset(self.files)


class Refusals:
    def __init__(self, path: Path, status: StatusReporter, preflight_settings: str = "") -> None:
        self.path = path
        self.status = status
        # Pre-flight refusals under other settings (a higher time or memory limit) are tried again.
        self.preflight_settings = preflight_settings
        self.entries: dict[tuple[str, int], Refusal] = {}
        try:
            raw: dict[str, Any] = json.loads(path.read_bytes())
            for key, item in raw["refused"].items():
                model, version = key.rsplit(":", 1)
                files = [(str(p), str(e), int(s)) for p, e, s in item["files"]]
                by, settings = RefusedBy(item["by"]), str(item.get("settings", ""))
                if by is RefusedBy.PREFLIGHT and settings != preflight_settings:
                    log.info("model %s: the pre-flight settings changed; checking it again", key)
                    continue
                refusal = Refusal(by, str(item["reason"]), files, float(item["at"]), settings)
                self.entries[(model, int(version))] = refusal
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable %s (refused versions are checked again): %s", path, exc)
        for (model, version), refusal in self.entries.items():
            self._show(model, version, refusal)

    def refused(self, model: str, version: int, listing: Signature) -> Refusal | None:
        """The refusal of exactly these bytes; a refusal of other bytes is forgotten."""
        refusal = self.entries.get((model, version))
        if refusal is None:
            return None
        if refusal.signature() == listing:
            return refusal
        log.info(
            "model %s:%s changed in the bucket since it was refused: trying it again",
            model,
            version,
            extra={"model": model, "version": version, "event": "refusal_cleared"},
        )
        self.forget(model, version)
        return None

    def add(self, model: str, version: int, listing: Signature, by: RefusedBy, reason: str) -> None:
        settings = self.preflight_settings if by is RefusedBy.PREFLIGHT else ""
        refusal = Refusal(by, reason, sorted(listing), time.time(), settings)
        self.entries[(model, version)] = refusal
        self._save()
        self._show(model, version, refusal)
        metrics.FAILURES.labels(reason=f"refused_{by.value}").inc()
        metrics.SYNCS.labels(outcome="refused").inc()
        log.error(
            "model %s:%s REFUSED by %s, not published (the previous version stays served): %s",
            model,
            version,
            by.value,
            reason,
            extra={"model": model, "version": version, "event": "refused"},
        )

    def forget(self, model: str, version: int) -> None:
        refusal = self.entries.pop((model, version), None)
        if refusal is None:
            return
        self._save()
        metrics.REFUSED.remove(model, str(version), refusal.by.value)
        self.status.refusal(model, version, None)

    def _show(self, model: str, version: int, refusal: Refusal) -> None:
        metrics.REFUSED.labels(model, str(version), refusal.by.value).set(1)
        shown = {"by": refusal.by.value, "reason": refusal.reason, "at": refusal.at}
        self.status.refusal(model, version, shown)

    def _save(self) -> None:
        document = {
            "refused": {f"{m}:{v}": asdict(r) | {"by": r.by.value} for (m, v), r in self.entries.items()}
        }
        atomic.write_json(self.path, document)
