"""The development stand-in for OVMS's model loading: follow config.json into MLServer.

OVMS polls ``config.json`` and each model's ``base_path`` (``--file_system_poll_wait_seconds``,
1 s) and serves the versions ``model_version_policy`` picks, the latest one by default. This
does the same for ``make run``'s MLServer: every ``POLL_SECONDS`` it reads the config.json the
agent wrote, picks each model's versions, writes one ``model-settings.json`` per version under
``<repository>/ovms/<model>/<version>/`` for ``runtime.OpenVinoModel`` (the OpenVINO runtime),
and asks MLServer to load the model (``POST /v2/repository/models/<name>/load``, which also
unloads the versions no longer there). A version republished in place (a new directory inode)
is loaded again. Production runs OVMS itself; this lives in devstack/ only.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

import requests

log = logging.getLogger("devstack.ovmsfollow")
POLL_SECONDS = 0.2
Served = dict[int, tuple[str, int]]  # version -> (directory, inode)


def versions_on_disk(base: Path) -> Served:
    found: Served = {}
    if not base.is_dir():
        return found
    for entry in base.iterdir():
        if entry.name.isdigit() and int(entry.name) > 0 and entry.is_dir():
            found[int(entry.name)] = (str(entry), entry.stat().st_ino)
    return found


def pick(found: Served, policy: dict[str, Any] | None) -> Served:
    """The versions OVMS would serve under ``model_version_policy`` (default: the latest)."""
    policy = policy or {"latest": {"num_versions": 1}}
    if "all" in policy:
        return found
    if "specific" in policy:
        wanted = set(policy["specific"].get("versions", []))
        return {v: d for v, d in found.items() if v in wanted}
    newest = sorted(found, reverse=True)[: int(policy.get("latest", {}).get("num_versions", 1))]
    return {v: found[v] for v in newest}


def wanted_models(config_json: Path) -> dict[str, Served]:
    try:
        document = json.loads(config_json.read_bytes())
    except (OSError, ValueError):
        return {}
    models: dict[str, Served] = {}
    for item in document.get("model_config_list", []):
        config = item.get("config", {})
        if config.get("base_path"):
            found = versions_on_disk(Path(config["base_path"]))
            models[config["name"]] = pick(found, config.get("model_version_policy"))
    return models


class ConfigFollower:
    def __init__(self, config_json: Path, repository: Path, server_url: str) -> None:
        self.config_json = config_json
        self.root = repository / "ovms"
        self.server_url = server_url.rstrip("/")
        self.served: dict[str, Served] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ovms-follow", daemon=True)
        shutil.rmtree(self.root, ignore_errors=True)  # a previous run's entries

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self.step()
            except (OSError, requests.RequestException) as exc:
                log.warning("following %s: %s", self.config_json, exc)

    def step(self) -> None:
        wanted = wanted_models(self.config_json)
        for model, versions in wanted.items():
            if versions != self.served.get(model):
                self._write(model, versions)
                self.served[model] = versions
                self._tell(model, "load" if versions else "unload")
        for model in set(self.served) - set(wanted):
            shutil.rmtree(self.root / model, ignore_errors=True)
            self._tell(model, "unload")
            del self.served[model]

    def _write(self, model: str, versions: Served) -> None:
        shutil.rmtree(self.root / model, ignore_errors=True)
        for version, (directory, _inode) in versions.items():
            target = self.root / model / str(version)
            target.mkdir(parents=True)
            settings = {
                "name": model,
                "implementation": "runtime.OpenVinoModel",
                "parameters": {"version": str(version), "uri": directory},
            }
            temp = target / ".model-settings.json.tmp"  # MLServer only reads model-settings.json
            temp.write_text(json.dumps(settings))
            temp.rename(target / "model-settings.json")

    def _tell(self, model: str, action: str) -> None:
        response = requests.post(f"{self.server_url}/v2/repository/models/{model}/{action}", timeout=30)
        if response.status_code == 200:
            log.info("model server: %s %s (versions %s)", action, model, sorted(self.served.get(model, {})))
        else:
            log.warning("model server refused to %s %s: %s", action, model, response.text[:300])
