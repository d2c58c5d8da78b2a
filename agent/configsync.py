"""After a batch of versions moved: rebuild config.json, swap it, and tell OVMS.

A swap or a reload that fails is owed: the agent's loop calls :meth:`ConfigSync.apply` again
on every step until it succeeds (an unchanged result costs a read and a compare, no write),
so fixing a broken config.json by hand, or OVMS coming back, is picked up without a restart.
"""

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
        self.owed = False  # config.json is not what the state says, or OVMS was not told
        self.reload_owed = False
        self._last_error: str | None = None

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
            self._failed(str(exc), "config")
            self.status.config_result(False, str(exc))
            self.reload_owed = self.reload_owed or force_reload
            return
        self.status.config_result(swapped)
        if swapped:
            metrics.CONFIG_SWAPS.inc()
            log.info("config.json updated: %d model(s) served from %s", len(published), models_path)
        self.reload_owed = self.reload_owed or force_reload or swapped
        if self.ovms is not None and self.reload_owed:
            self._reload(self.ovms)
        else:
            self.reload_owed = False
        self.owed = self.reload_owed
        if not self.owed and self._last_error is not None:
            log.info("config.json and OVMS are in step again")
            self._last_error = None

    def _reload(self, ovms: OvmsClient) -> None:
        try:
            outcome = ovms.reload()
        except RuntimeError as exc:
            self._failed(f"{exc} (config.json was swapped; retrying the reload)", "ovms_reload")
            self.status.update(ovms={"reload": "failed", "error": str(exc), "at": time.time()})
            return
        self.reload_owed = False
        self.status.update(ovms={"reload": outcome, "error": None, "at": time.time()})
        for model, versions in ovms.version_states().items():
            for version, state in versions.items():
                if self.state.version(model, version) is not None:
                    self.status.version(model, version, "published", ovms_state=state)

    def _failed(self, message: str, reason: str) -> None:
        self.owed = True
        if message == self._last_error:
            return  # retried every step: say it once, not every two seconds
        self._last_error = message
        log.error("%s", message)
        self.status.error(message)
        metrics.FAILURES.labels(reason=reason).inc()
