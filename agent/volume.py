"""Housekeeping of the models volume: the agent's own directories, what a crash left behind,
and which numbered version directories are on disk."""

from __future__ import annotations

import contextlib
import functools
import logging
import os

from agent import dirswap, ovmsconfig, sidecarlog
from agent.localstate import LocalState
from modelsync import intentlog, keys
from modelsync.config import Config
from modelsync.errors import PublishError

log = logging.getLogger(__name__)


def prepare_directories(config: Config) -> None:
    """The agent's own directories; a clear error when the volume is not writable."""
    for directory in (config.state_dir, config.intents_dir, config.failed_dir, config.results_dir):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if isinstance(exc, PermissionError):
                sidecarlog.permission_denied(str(config.sync.models_path))
            raise PublishError(
                f"cannot create {exc.filename or directory}: {exc.strerror} "
                f"(the models directory {config.sync.models_path} must be writable by uid {os.getuid()})"
            ) from None


def clean_leftovers(config: Config, state: LocalState) -> None:
    """What a crash left: staging and trash directories (hidden names only the agent makes,
    so every model directory is looked at, also one whose last version the state already
    dropped), config temp files, a webhook's temp files in the intents directory, and model
    directories left empty."""
    ovmsconfig.remove_temp_files(config.ovms.config_path)
    for name in intentlog.remove_abandoned_temp_files(config.intents_dir):
        log.info("removed %s, left in %s by a webhook stopped mid-write", name, config.intents_dir)
    for model_dir in config.sync.models_path.iterdir():
        if not keys.is_model_name(model_dir.name) or model_dir.is_symlink() or not model_dir.is_dir():
            continue
        model = model_dir.name
        published = functools.partial(_is_published, state, model)
        try:
            for path in dirswap.remove_leftovers(model_dir, published):
                log.info("removed leftover %s of an interrupted sync", path)
        except OSError as exc:  # a directory this uid cannot read is not the agent's
            log.warning("cannot clean %s: %s", model_dir, exc.strerror)
            continue
        if model not in state.models:
            with contextlib.suppress(OSError):
                model_dir.rmdir()  # only when empty: never anything else's


def _is_published(state: LocalState, model: str, version: int) -> bool:
    return state.version(model, version) is not None
