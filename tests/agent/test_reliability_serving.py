"""What OVMS sees: config.json is always whole and valid, version directories always complete.

Real agent and gunicorn processes, a real S3 endpoint. A reader polls config.json the way
OVMS does while the agent swaps it hundreds of times; an observer lists the models directory
while versions are uploaded slowly, file by file; a storm of duplicate, stale and shuffled
events for one version costs one download per object.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from modelsync import schema
from tests.support.helpers import md5, minio_event, served_models, wait_for
from tests.support.intents import intent_files
from tests.support.s3 import Bucket
from tests.support.volume import TOKEN, Volume, read_status


def fast_agent_settings(volume: Volume, settle: float) -> None:
    volume.settings["sync"].update(settle_seconds=settle, interval=600, heartbeat_seconds=0.2)
    volume.write()


class ConfigReader(threading.Thread):
    """Reads config.json like OVMS: open, read, parse, validate; counts every kind of failure."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.stop = threading.Event()
        self.reads = 0
        self.failures: Counter[str] = Counter()
        self.examples: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.path.read_bytes()
                document = json.loads(data)
                if not schema.is_valid(schema.OVMS_CONFIG, document):
                    self._fail("schema", data)
            except FileNotFoundError:
                self._fail("missing", b"")
            except ValueError as exc:
                self._fail("invalid JSON", str(exc).encode())
            self.reads += 1
            time.sleep(0.001)  # pacing: leave the GIL to the test driving the swaps

    def _fail(self, kind: str, data: bytes) -> None:
        self.failures[kind] += 1
        if len(self.examples) < 3:
            self.examples.append(f"{kind}: {data[:200]!r}")


def post(webhook: Any, bucket: Bucket, key: str, **kwargs: Any) -> None:
    response = webhook.post_event(minio_event(bucket.name, key, **kwargs))
    assert response.status_code == 200, response.text


def test_config_json_is_always_whole_and_valid_during_hundreds_of_swaps(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    fast_agent_settings(volume, settle=0.0)
    start_agent()
    webhook = start_webhook()
    reader = ConfigReader(volume.ovms_config)
    reader.start()
    iterations = int(os.environ.get("MODELSYNC_SWAP_ITERATIONS", "120"))
    window = 3
    try:
        for i in range(iterations):
            bucket.put(f"swap{i}/1/model.bin", b"x" * (i + 1))
            post(webhook, bucket, f"swap{i}/1/model.bin")
            if i >= window:
                bucket.delete(f"swap{i - window}/1/model.bin")
                post(webhook, bucket, f"swap{i - window}/1/model.bin", event="s3:ObjectRemoved:Delete")
            wanted = {f"swap{j}" for j in range(max(0, i - window + 1), i + 1)}
            wait_for(lambda w=wanted: set(served_models(volume.ovms_config)) == w, 20, what=f"step {i}")
    finally:
        reader.stop.set()
        reader.join(timeout=10)

    # Every step changed the served set, so each took at least one swap; an add and a delete
    # that arrive together may share one (the agent coalesces them), so not always two.
    def swap_count() -> int | None:
        swaps = read_status(volume).get("config", {}).get("swaps")
        return swaps if isinstance(swaps, int) and swaps >= iterations else None

    swaps = wait_for(swap_count, what=f"at least {iterations} swaps in the status")
    print(f"\nconfig reader: {reader.reads} reads during {swaps} swaps, failures {dict(reader.failures)}")
    assert not reader.failures, reader.examples
    assert reader.reads >= 2000


def numbered_versions(models: Path) -> dict[tuple[str, int], frozenset[str]]:
    """Every numbered version directory and the files it holds, as an OVMS scan would see them."""
    seen: dict[tuple[str, int], frozenset[str]] = {}
    try:
        model_dirs = list(os.scandir(models))
    except FileNotFoundError:
        return seen
    for model_dir in model_dirs:
        if model_dir.name.startswith(".") or not model_dir.is_dir(follow_symlinks=False):
            continue
        try:
            entries = list(os.scandir(model_dir.path))
        except FileNotFoundError:
            continue
        for entry in entries:
            if not entry.name[:1].isdigit():
                continue
            files = set()
            for root, _dirs, names in os.walk(entry.path):
                files.update(os.path.relpath(os.path.join(root, n), entry.path) for n in names)
            seen[(model_dir.name, int(entry.name))] = frozenset(files)
    return seen


class Observer(threading.Thread):
    def __init__(self, models: Path) -> None:
        super().__init__(daemon=True)
        self.models = models
        self.stop = threading.Event()
        self.scans = 0
        self.observed: dict[tuple[str, int], set[frozenset[str]]] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            for key, files in numbered_versions(self.models).items():
                self.observed.setdefault(key, set()).add(files)
            self.scans += 1


def test_a_numbered_version_never_lacks_a_file_while_uploads_trickle_in(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    settle = 0.5
    fast_agent_settings(volume, settle=settle)
    start_agent()
    webhook = start_webhook()
    observer = Observer(volume.models)
    observer.start()
    final: dict[tuple[str, int], set[str]] = {}

    def upload_slowly(model: str, version: int, files: dict[str, bytes], pause: float) -> None:
        final[(model, version)] = set(files)
        for path, data in files.items():
            etag = bucket.put(f"{model}/{version}/{path}", data)
            post(webhook, bucket, f"{model}/{version}/{path}", etag=etag, size=len(data))
            time.sleep(pause)  # a slow uploader, not a synchronisation

    try:
        # With a manifest (uploaded first): pauses longer than the settle time must not matter.
        parts = {"model.xml": b"<xml/>", "model.bin": os.urandom(200_000), "sub/labels.txt": b"a\nb\n"}
        manifest = {
            "files": {p: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()} for p, d in parts.items()}
        }
        upload_slowly("manifested", 1, {"metadata.json": json.dumps(manifest).encode(), **parts}, 2 * settle)
        # Without one: a steady uploader, pauses shorter than the settle time.
        plain = {f"shard-{i}.bin": os.urandom(50_000) for i in range(6)}
        upload_slowly("plain", 1, plain, settle / 4)
        upload_slowly("plain", 2, {"model.onnx": b"onnx", "sub/vocab.txt": b"v"}, settle / 4)
        for key in final:
            wait_for(lambda k=key: numbered_versions(volume.models).get(k) == frozenset(final[k]), 20)
    finally:
        observer.stop.set()
        observer.join(timeout=10)
    print(f"\nobserver: {observer.scans} scans of the models directory")
    assert observer.scans >= 100
    for key, files in final.items():
        observed = observer.observed.get(key, set())
        assert observed, f"{key} never observed"
        incomplete = [sorted(files - seen) for seen in observed if not files <= seen]
        assert not incomplete, f"{key} was visible lacking {incomplete}"
    assert set(served_models(volume.ovms_config)) == {"manifested", "plain"}


def test_a_storm_of_duplicate_and_shuffled_events_costs_one_download_per_object(
    volume: Volume, bucket: Bucket, start_agent, start_webhook
) -> None:
    fast_agent_settings(volume, settle=0.3)
    start_agent()
    wait_for(lambda: read_status(volume).get("last_reconcile"), what="the first (empty) reconcile")
    webhook = start_webhook()
    rng = random.Random(4)
    files = {f"part-{i}.bin": os.urandom(20_000 + i) for i in range(5)}
    stale = {}
    for path in files:
        stale[path] = bucket.put(f"storm/1/{path}", b"old " + path.encode())  # overwritten below
    current = {path: bucket.put(f"storm/1/{path}", data) for path, data in files.items()}
    bodies = []
    for n in range(1000):
        path = rng.choice(sorted(files))
        key = f"storm/1/{path}"
        kind = rng.random()
        if kind < 0.6:
            bodies.append(minio_event(bucket.name, key, etag=current[path], size=len(files[path])))
        elif kind < 0.8:
            bodies.append(minio_event(bucket.name, key, etag=stale[path], sequencer=f"{n:016X}"))
        else:
            bodies.append(minio_event(bucket.name, key, event="s3:ObjectRemoved:Delete"))
    rng.shuffle(bodies)
    session = requests.Session()

    def send(body: dict[str, Any]) -> int:
        return session.post(
            f"{webhook.url}/minio/events", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        ).status_code

    with ThreadPoolExecutor(8) as pool:
        statuses = Counter(pool.map(send, bodies))
    assert statuses == {200: 1000}
    target = volume.models / "storm" / "1"
    webhook.proc.stop()  # its log segments are finished: the agent deletes them once all is done
    wait_for(lambda: not intent_files(volume.intents), 60, what="all 1000 intents consumed")
    wait_for(lambda: target.is_dir(), what="storm:1 published")
    for path, data in files.items():
        assert (target / path).read_bytes() == data
    assert {p.name for p in target.iterdir()} == set(files)
    wait_for(lambda: read_status(volume).get("pending_intents") == 0, what="status caught up")
    counters = read_status(volume)["counters"]
    assert counters["downloaded_files"] == len(files), counters
    assert counters["downloaded_bytes"] == sum(len(d) for d in files.values())
    assert md5(files["part-0.bin"]) == current["part-0.bin"]
