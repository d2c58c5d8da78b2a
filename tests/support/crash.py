"""The crash rig: changes the bucket, SIGKILLs the agent at random moments of a sync, restarts
it and checks what it left and that it converged (tests/agent/test_reliability_crash.py runs a
few rounds, ``bench/soak.py`` many)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelsync import schema
from modelsync.intents import IntentWriter
from tests.support.helpers import wait_for
from tests.support.processes import Process
from tests.support.s3 import Bucket
from tests.support.volume import Volume, read_status

Version = tuple[str, int]
Content = dict[str, bytes]  # path inside the version -> bytes


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fingerprint(files: Content) -> frozenset[tuple[str, str]]:
    return frozenset((p, sha(d)) for p, d in files.items())


def disk_version(directory: Path) -> frozenset[tuple[str, str]] | None:
    """What a version directory holds (regular files only), or None when it is not there."""
    if not directory.is_dir():
        return None
    found = set()
    for root, _dirs, files in os.walk(directory):
        for name in files:
            path = Path(root) / name
            rel = path.relative_to(directory).as_posix()
            found.add((rel, sha(path.read_bytes()) if not path.is_symlink() else "symlink"))
    return frozenset(found)


def leftovers(models: Path) -> list[str]:
    """Staging/trash directories and config temp files: what a crash may leave behind."""
    found = [p.name for p in models.glob(".config.json.tmp-*")]
    for model_dir in models.iterdir():
        if model_dir.is_dir() and not model_dir.name.startswith("."):
            found += [f"{model_dir.name}/{p.name}" for p in model_dir.iterdir() if p.name.startswith(".")]
    return found


@dataclass
class CrashFigures:
    rounds: int = 0
    kills: int = 0
    kill_points: Counter[str] = field(default_factory=Counter)
    files_uploaded: int = 0
    downloads_expected: int = 0
    downloads_done: int = 0
    leftovers_after_restart: int = 0
    partial_versions_seen: int = 0
    invalid_configs_seen: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "rounds": self.rounds,
            "kills": self.kills,
            "kill_points": dict(self.kill_points),
            "files_uploaded": self.files_uploaded,
            "downloads_expected_after_restarts": self.downloads_expected,
            "downloads_done_after_restarts": self.downloads_done,
            "leftovers_after_restart": self.leftovers_after_restart,
            "partial_versions_seen": self.partial_versions_seen,
            "invalid_configs_seen": self.invalid_configs_seen,
            "seconds": round(self.seconds, 1),
        }


class CrashRig:
    """Drives the rounds; knows the bucket's truth and every complete state a version had."""

    MODELS = ("alpha", "beta", "gamma")

    def __init__(
        self,
        bucket: Bucket,
        volume: Volume,
        start_agent: Callable[..., Process],
        rng: random.Random,
        max_delay: float = 0.2,
        files_per_version: tuple[int, int] = (4, 10),
        file_size: tuple[int, int] = (8 * 1024, 96 * 1024),
    ) -> None:
        self.bucket = bucket
        self.volume = volume
        self.start_agent = start_agent
        self.rng = rng
        self.max_delay = max_delay
        self.files_per_version = files_per_version
        self.file_size = file_size
        self.truth: dict[Version, Content] = {}
        self.history: dict[Version, set[frozenset[tuple[str, str]]]] = {}
        self.next_version: dict[str, int] = dict.fromkeys(self.MODELS, 1)
        self.writer = IntentWriter(volume.intents)
        self.figures = CrashFigures()
        self.agent: Process | None = None

    # -- the bucket -------------------------------------------------------------------------
    def _blob(self) -> bytes:
        return self.rng.randbytes(self.rng.randint(*self.file_size))

    def _put_version(self, key: Version, files: Content, manifest: bool) -> None:
        model, version = key
        files = dict(files)
        if manifest:
            listed: dict[str, Any] = {}
            for path, data in files.items():
                listed[path] = (
                    {"size": len(data), "sha256": sha(data)} if self.rng.random() < 0.5 else len(data)
                )
            files["metadata.json"] = json.dumps({"files": listed}).encode()
        for path, data in files.items():
            self.bucket.put(f"{model}/{version}/{path}", data)
            self.figures.files_uploaded += 1
        old = self.truth.get(key, {})
        for path in set(old) - set(files):
            self.bucket.delete(f"{model}/{version}/{path}")
        self.truth[key] = files
        self.history.setdefault(key, set()).add(fingerprint(files))

    def mutate(self) -> str:
        live = sorted(self.truth)
        choice = self.rng.random()
        if len(live) >= 6 or (live and choice < 0.15):
            key = self.rng.choice(live)
            for path in self.truth.pop(key):
                self.bucket.delete(f"{key[0]}/{key[1]}/{path}")
            return "delete"
        if live and choice < 0.45:
            key = self.rng.choice(live)
            files = {p: d for p, d in self.truth[key].items() if p != "metadata.json"}
            for path in self.rng.sample(sorted(files), k=min(len(files), self.rng.randint(1, 2))):
                files[path] = self._blob()
            if self.rng.random() < 0.3:
                files[f"added-{self.rng.randrange(1000)}.bin"] = self._blob()
            self._put_version(key, files, manifest="metadata.json" in self.truth[key])
            return "update"
        model = self.rng.choice(self.MODELS)
        key = (model, self.next_version[model])
        self.next_version[model] += 1
        count = self.rng.randint(*self.files_per_version)
        files = {f"{'sub/' if i % 3 == 2 else ''}part-{i}.bin": self._blob() for i in range(count)}
        self._put_version(key, files, manifest=self.rng.random() < 0.5)
        return "add"

    # -- the disk ---------------------------------------------------------------------------
    def numbered_dirs(self) -> dict[Version, Path]:
        found = {}
        for model_dir in self.volume.models.iterdir():
            if model_dir.is_dir() and not model_dir.is_symlink() and not model_dir.name.startswith("."):
                for entry in model_dir.iterdir():
                    if entry.name[:1].isdigit():
                        found[(model_dir.name, int(entry.name))] = entry
        return found

    def check_after_kill(self) -> int:
        """Only complete versions and a valid config; returns the downloads a restart needs."""
        document = json.loads(self.volume.ovms_config.read_text())
        if not schema.is_valid(schema.OVMS_CONFIG, document):
            self.figures.invalid_configs_seen += 1
            raise AssertionError(f"config.json fails the OVMS schema after a kill: {document}")
        for key, path in self.numbered_dirs().items():
            held = disk_version(path)
            if held not in self.history.get(key, set()):
                self.figures.partial_versions_seen += 1
                raise AssertionError(
                    f"{path} after a kill is no complete state of {key}: {sorted(held or [])}"
                )
        missing = 0
        for (model, version), files in self.truth.items():
            for path, data in files.items():
                local = self.volume.models / model / str(version) / path
                ok = local.is_file() and not local.is_symlink() and local.read_bytes() == data
                missing += not ok
        return missing

    def kill_point(self) -> str:
        """Where the kill landed, read from the disk it left."""
        names = leftovers(self.volume.models)
        if any("/.staging-" in n for n in names):
            return "mid-download (staging dir present)"
        if any("/.trash-" in n for n in names):
            return "mid-replace/remove (trash dir present)"
        if any(n.startswith(".config.json.tmp-") for n in names):
            return "mid config write (temp file present)"
        served = {
            item["config"]["name"]
            for item in json.loads(self.volume.ovms_config.read_text())["model_config_list"]
        }
        on_disk = {m for m, _v in self.numbered_dirs()}
        if on_disk != served:
            return "between rename and config write"
        state_path = self.volume.models / ".modelsync" / "state.json"
        state = json.loads(state_path.read_text()).get("models", {}) if state_path.exists() else {}
        recorded = {(m, int(v)) for m, vs in state.items() for v in vs}
        if recorded != set(self.numbered_dirs()):
            return "between rename and state save"
        if {k: fingerprint(v) for k, v in self.truth.items()} == {
            k: disk_version(p) for k, p in self.numbered_dirs().items()
        }:
            return "after the sync"
        return "before the first rename"

    def converged(self) -> bool:
        on_disk = self.numbered_dirs()
        if set(on_disk) != set(self.truth):
            return False
        if any(disk_version(on_disk[k]) != fingerprint(files) for k, files in self.truth.items()):
            return False
        try:
            document = json.loads(self.volume.ovms_config.read_text())
        except ValueError:
            return False
        served = {item["config"]["name"] for item in document["model_config_list"]}
        return served == {m for m, _v in self.truth} and not leftovers(self.volume.models)

    # -- the rounds -------------------------------------------------------------------------
    def delay(self) -> float:
        """Skewed towards zero: a sync of small files lasts tens of milliseconds."""
        return float(self.max_delay * self.rng.random() ** 2)

    def kill(self, proc: Process) -> None:
        proc.popen.kill()
        proc.popen.wait(timeout=10)
        proc.handle.close()
        self.figures.kills += 1

    def start(self, reconciled: bool = True) -> Process:
        proc = self.start_agent(wait_ready=False)
        # Started once its first reconcile is done: the next one is `interval` (10 min) away,
        # so the rounds' uploads are only seen through their resync intent. Without
        # ``reconciled``: as soon as it is up, before it looked at the bucket.
        wait_for(lambda: self._reconciled(proc, reconciled) or not proc.alive(), 30, what="agent start")
        assert proc.alive(), proc.log
        return proc

    def _reconciled(self, proc: Process, reconciled: bool) -> bool:
        status = read_status(self.volume)
        if status.get("pid") != proc.popen.pid:
            return False
        return not reconciled or status.get("last_reconcile") is not None

    def setup(self) -> None:
        self.volume.settings["sync"].update(
            log_level="DEBUG",
            settle_seconds=0.05,
            heartbeat_seconds=0.1,
            download_concurrency=1,
            interval=600,
        )
        self.volume.write()
        self.agent = self.start()

    def round(self) -> None:
        assert self.agent is not None
        for _ in range(self.rng.randint(1, 2)):
            self.mutate()
        self.writer.write_all([self.writer.new("resync")])
        time.sleep(self.delay())  # a random kill point, not a synchronisation
        self.kill(self.agent)
        self.figures.kill_points[self.kill_point()] += 1
        self.check_after_kill()
        if self.rng.random() < 0.3:
            # Crash the recovery too, while it cleans up and re-downloads.
            second = self.start(reconciled=False)
            time.sleep(self.delay())
            self.kill(second)
            self.figures.kill_points["during recovery: " + self.kill_point()] += 1
            self.check_after_kill()
        expected = self.check_after_kill()
        self.agent = self.start()
        wait_for(self.converged, 30, what="convergence after a restart")
        pid = self.agent.popen.pid

        def counted() -> int | None:
            status = read_status(self.volume)
            if status.get("pid") != pid or status.get("pending_intents"):
                return None
            return int(status.get("counters", {}).get("downloaded_files", -1))

        # The heartbeat publishes the counter; it must settle on exactly the missing files.
        wait_for(lambda: counted() == expected, 10, what=f"downloaded_files == {expected} (got {counted()})")
        self.figures.downloads_expected += expected
        self.figures.downloads_done += expected
        self.figures.leftovers_after_restart += len(leftovers(self.volume.models))
        assert not leftovers(self.volume.models)
        assert "Traceback" not in self.agent.log, self.agent.log
        self.figures.rounds += 1

    def run(self, rounds: int) -> CrashFigures:
        started = time.monotonic()
        self.setup()
        for _ in range(rounds):
            self.round()
        self.figures.seconds = time.monotonic() - started
        return self.figures
