"""Benchmark 3: burst coalescing.

The 20 files of one version are in the bucket; then 1,000 MinIO events for them (50 per file,
shuffled: duplicates, as MinIO's queue re-sends) are POSTed at the webhook by 16 threads as
fast as it takes them. Counted independently of the agent's own counters: object GETs per key
in moto's access log, and renames onto ``config.json`` seen by inotify. Two variants, each on
its own bucket and agent: with a manifest (``metadata.json``, 21 objects) and without one
(settle time, default 2 s).
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from bench import harness
from tests.support.helpers import minio_event

FILES = 20
EVENTS = 1000
FILE_BYTES = 256 * 1024


class SwapCounter(FileSystemEventHandler):
    def __init__(self, target: Path) -> None:
        self.target = str(target)
        self.swaps: list[float] = []

    def on_moved(self, event: FileSystemEvent) -> None:
        if event.dest_path == self.target:
            self.swaps.append(time.monotonic())

    def on_created(self, event: FileSystemEvent) -> None:
        if event.src_path == self.target:
            self.swaps.append(time.monotonic())


def fire(stack: harness.Stack, events: list[tuple[str, str, int]], threads: int = 16) -> float:
    bodies = [json.dumps(minio_event(stack.bucket, k, etag=e, size=s)).encode() for k, e, s in events]
    headers = {"Authorization": f"Bearer {harness.TOKEN}", "Content-Type": "application/json"}
    local = threading.local()

    def post(body: bytes) -> int:
        if not hasattr(local, "conn"):
            local.conn = http.client.HTTPConnection("127.0.0.1", stack.webhook_port, timeout=10)
        local.conn.request("POST", "/minio/events", body, headers)
        response = local.conn.getresponse()
        response.read()
        return response.status

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        statuses = list(pool.map(post, bodies))
    elapsed = time.monotonic() - started
    assert all(s == 200 for s in statuses), set(statuses)
    return elapsed


def variant(s3: harness.S3, workdir: Path, manifest: bool, seed: int) -> dict[str, Any]:
    name = "manifest" if manifest else "settle"
    bucket = s3.bucket(f"burst-{name}")
    stack = harness.Stack(s3, bucket, workdir / name)
    counter = SwapCounter(stack.ovms_config)
    observer = Observer()
    try:
        stack.start_agent()
        stack.start_webhook()
        observer.schedule(counter, str(stack.models), recursive=False)
        observer.start()
        offset = s3.log_offset()
        swaps_before = len(counter.swaps)
        # Uploaded while the agent runs (else its start-up reconcile would take them first).
        files = {f"burst/1/part-{i:02d}.bin": harness.random_bytes(FILE_BYTES) for i in range(FILES)}
        keys = list(files)
        if manifest:
            meta = json.dumps({"files": {k.rsplit("/", 1)[1]: FILE_BYTES for k in keys}}).encode()
            files = {"burst/1/metadata.json": meta, **files}
        etags = {k: s3.put(bucket, k, v) for k, v in files.items()}
        events = [(k, etags[k], len(files[k])) for k in files for _ in range(EVENTS // len(files))]
        events += [events[-1]] * (EVENTS - len(events))
        random.Random(seed).shuffle(events)
        started = time.monotonic()
        send_seconds = fire(stack, events)
        harness.wait_for(lambda: "burst" in stack.served(), 60, 0.01, "burst:1 served")
        served_after = time.monotonic() - started
        harness.wait_for(lambda: not any(stack.intents.glob("*.json")), 60, 0.05, "intents drained")
        time.sleep(3.0)  # anything late (a second swap, a re-download) would show by now
        gets = s3.gets_since(offset, bucket)
        status = stack.status()
    finally:
        observer.stop()
        observer.join(5)
        stack.stop()
    data_gets = {k: gets.get(k, 0) for k in keys}
    return {
        "events": len(events),
        "files": len(keys),
        "manifest": manifest,
        "send_seconds": round(send_seconds, 3),
        "events_per_s": round(len(events) / send_seconds, 1),
        "served_after_seconds": round(served_after, 3),
        "gets_per_file": sorted(set(data_gets.values())),
        "each_file_downloaded_once": all(v == 1 for v in data_gets.values()),
        "manifest_reads": gets.get("burst/1/metadata.json", 0),
        "config_swaps_seen_by_inotify": len(counter.swaps) - swaps_before,
        "config_swaps_agent_counter": status.get("config", {}).get("swaps"),
        "downloaded_files_agent_counter": status.get("counters", {}).get("downloaded_files"),
    }


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    results = {}
    with harness.workspace("burst") as workdir:
        s3 = harness.S3(workdir)
        try:
            for manifest in (True, False):
                row = variant(s3, workdir, manifest, seed=5)
                results["manifest" if manifest else "settle"] = row
                print(f"[burst] {row}", flush=True)
        finally:
            s3.stop()
    goals = {
        k: {
            "each_file_downloaded_once": v["each_file_downloaded_once"],
            "config_swapped_at_most_twice": v["config_swaps_seen_by_inotify"] <= 2,
            "events_within_1s": v["send_seconds"] <= 1.0,
        }
        for k, v in results.items()
    }
    harness.report("burst", args.quick, {"variants": results, "goals_met": goals})


if __name__ == "__main__":
    main()
