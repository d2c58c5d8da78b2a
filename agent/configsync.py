"""After a batch of versions moved: rebuild config.json, swap it, and tell OVMS."""

from __future__ import annotations

import logging
import time

from agent import metrics, ovmsconfig
from agent.localstate import LocalState
from agent.ovmsclient import OvmsClient
from agent.status import StatusReporter
from modelsync.config import Config
from modelsync.errors import OvmsConfigError

log = logging.getLogger(__name__)


class ConfigSync:
    def __init__(self, config: Config, state: LocalState, status: StatusReporter) -> None:
        self.config = config
        self.state = state
        self.status = status
        rest_url = config.ovms.rest_url
        self.ovms = OvmsClient(rest_url, config.ovms.reload_timeout_seconds) if rest_url else None

    def apply(self, force_reload: bool) -> None:
        """Swap config.json if its content changes; reload OVMS if it did or ``force_reload``."""
        path = self.config.ovms.config_path
        try:
            current, on_disk = ovmsconfig.read_current(path)
            published = self.state.published()
            models_path = self.config.sync.models_path
            stale = ovmsconfig.stale_entries(current, self.config.ovms, models_path, published)
            managed = set(self.state.models) | stale
            document = ovmsconfig.merge(current, self.config.ovms, published, managed)
            swapped = ovmsconfig.swap_if_changed(path, document, on_disk)
        except OvmsConfigError as exc:
            log.error("%s", exc)
            self.status.config_result(False, str(exc))
            self.status.error(str(exc))
            metrics.FAILURES.labels(reason="config").inc()
            return
        self.status.config_result(swapped)
        if swapped:
            metrics.CONFIG_SWAPS.inc()
            log.info(
                "config.json updated: %d model(s) served from %s",
                len(published),
                self.config.sync.models_path,
            )
        if self.ovms is not None and (swapped or force_reload):
            self._reload(self.ovms)

    def _reload(self, ovms: OvmsClient) -> None:
        try:
            outcome = ovms.reload()
        except RuntimeError as exc:
            log.warning("%s (config.json was swapped; OVMS will pick it up when it polls)", exc)
            self.status.update(ovms={"reload": "failed", "error": str(exc), "at": time.time()})
            metrics.FAILURES.labels(reason="ovms_reload").inc()
            return
        self.status.update(ovms={"reload": outcome, "error": None, "at": time.time()})
        for model, versions in ovms.version_states().items():
            for version, state in versions.items():
                if self.state.version(model, version) is not None:
                    self.status.version(model, version, "published", ovms_state=state)
