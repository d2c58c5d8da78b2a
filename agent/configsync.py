"""After a batch of versions moved: rebuild config.json, swap it, and tell OVMS.

What fails is owed and tried again on a backoff schedule (:meth:`ConfigSync.due`): a swap
refused because config.json is broken or the disk is full, and a reload OVMS did not answer
(it is down or starting). An unchanged result costs a read and a compare, no write, so fixing
config.json by hand or OVMS coming up is picked up without a restart. A reload OVMS answered
with an error is reported and not repeated: OVMS read the file, and the error is about a model.
"""

from __future__ import annotations

import logging
import time

from agent import metrics, ovmsconfig, sidecarlog
from agent.localstate import LocalState
from agent.ovmsclient import OvmsClient, OvmsUnreachable
from agent.retry import Backoff
from agent.status import StatusReporter
from modelsync.config import Config
from modelsync.errors import OvmsConfigError

log = logging.getLogger(__name__)
COLLISION_RECHECK_SECONDS = 2.0


class ConfigSync:
    def __init__(self, config: Config, state: LocalState, status: StatusReporter) -> None:
        self.config = config
        self.state = state
        self.status = status
        rest_url = config.ovms.rest_url
        self.ovms = OvmsClient(rest_url, config.ovms.reload_timeout_seconds) if rest_url else None
        self.owed = False  # config.json may not be what the state says, or OVMS was not told
        self.reload_owed = False
        self._backoff = Backoff(base=1.0, cap=30.0)
        self._retry_at = 0.0
        self._last_error: str | None = None
        self.collisions: dict[str, str] = {}  # model -> base_path of the hand-written entry

    def due(self) -> bool:
        return self.owed and time.monotonic() >= self._retry_at

    def apply(self, force_reload: bool) -> None:
        """Swap config.json if its content changes; reload OVMS if it did or ``force_reload``."""
        self.reload_owed = self.reload_owed or force_reload
        path = self.config.ovms.config_path
        try:
            current, on_disk = ovmsconfig.read_current(path)
            published = self.state.published()
            models_path = self.config.sync.models_path
            stale = ovmsconfig.stale_entries(current, self.config.ovms, models_path, published)
            managed = set(self.state.models) | stale
            merged = ovmsconfig.merge(current, self.config.ovms, published, managed)
            swapped = ovmsconfig.swap_if_changed(path, merged.document, on_disk)
        except OvmsConfigError as exc:
            self.status.config_result(False, str(exc))
            self._failed(str(exc), "config")
            return
        self.status.config_result(swapped)
        if swapped:
            metrics.CONFIG_SWAPS.inc()
            served = len(published) - len(merged.collisions)
            log.info("config.json updated: %d model(s) served from %s", served, models_path)
            sidecarlog.saved_config(len(merged.document.get("model_config_list", [])))
        self._report_collisions(merged.collisions)
        self.reload_owed = (self.reload_owed or swapped) and self.ovms is not None
        if self.ovms is not None and self.reload_owed and not self._reload(self.ovms):
            return
        self.owed = False
        self._backoff.reset()
        if self.collisions:  # read config.json again until the operator resolves it
            self.owed, self._retry_at = True, time.monotonic() + COLLISION_RECHECK_SECONDS
        if self._last_error is not None:
            log.info("config.json and OVMS are in step again")
            self._last_error = None

    def _report_collisions(self, collisions: dict[str, str]) -> None:
        """Said once per collision in the log; in status.json and the metric while it lasts."""
        models_path = self.config.sync.models_path
        for name in sorted(set(collisions) - set(self.collisions)):
            log.warning(
                "model %s: config.json has a hand-written entry of that name (base_path %s); keeping "
                "it, the bucket's versions stay in %s unserved until that entry is removed or one "
                "of the two is renamed",
                name,
                collisions[name],
                models_path / name,
                extra={"model": name, "event": "collision"},
            )
        for name in sorted(set(self.collisions) - set(collisions)):
            log.info("model %s: the name collision in config.json is resolved", name, extra={"model": name})
        self.collisions = collisions
        metrics.CONFIG_COLLISIONS.set(len(collisions))
        self.status.update(
            collisions={
                name: {"hand_written_base_path": base, "bucket_versions_in": str(models_path / name)}
                for name, base in collisions.items()
            }
        )

    def _reload(self, ovms: OvmsClient) -> bool:
        """False when the reload is still owed (OVMS did not answer)."""
        try:
            outcome = ovms.reload()
        except OvmsUnreachable as exc:
            self.status.update(ovms={"reload": "failed", "error": str(exc), "at": time.time()})
            self._failed(f"{exc} (config.json was swapped; retrying the reload)", "ovms_reload")
            return False
        except RuntimeError as exc:
            self.reload_owed = False
            self.status.update(ovms={"reload": "failed", "error": str(exc), "at": time.time()})
            log.error("%s", exc)
            self.status.error(str(exc))
            metrics.FAILURES.labels(reason="ovms_reload").inc()
            return True
        self.reload_owed = False
        self.status.update(ovms={"reload": outcome, "error": None, "at": time.time()})
        for model, versions in ovms.version_states().items():
            for version, state in versions.items():
                if self.state.version(model, version) is not None:
                    self.status.version(model, version, "published", ovms_state=state)
        return True

    def _failed(self, message: str, reason: str) -> None:
        self.owed = True
        self._retry_at = time.monotonic() + self._backoff.next_delay()
        if message == self._last_error:
            return  # retried on a schedule: said once, not at every try
        self._last_error = message
        log.error("%s", message)
        self.status.error(message)
        metrics.FAILURES.labels(reason=reason).inc()
