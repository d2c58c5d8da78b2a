"""Benchmark 3: burst coalescing.

The 20 files of one version are in the bucket; then 1,000 MinIO events for them (50 per file,
shuffled: duplicates, as MinIO's queue re-sends) are POSTed at the webhook by 16 threads as
fast as it takes them. Counted independently of the agent's own counters: object GETs per key
in moto's access log, and renames onto ``config.json`` seen by inotify. Two variants, each on
its own bucket and agent: with a manifest (``metadata.json``, 21 objects) and without one
(settle time, default 2 s). The two variants are run ``--repeats`` times, interleaved, each
time on a fresh bucket and agent; every goal is judged on the median over the repeats.
"""

from __future__ import annotations

import http.client
import itertools
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
from bench.goals import Goal, interleave, spread_text
from tests.support.helpers import minio_event
from tests.support.intents import intent_files

FILES = 20
EVENTS = 1000
FILE_BYTES = 256 * 1024
LATE_SECONDS = 3.0
seeds = itertools.count(5)  # each run its own shuffle of the events
NAME = "burst"


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
    stack = harness.Stack(s3, bucket, workdir / f"{name}-{seed}")
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
        # The webhook's log segments go once its workers have ended and every intent is done.
        assert stack.webhook is not None
        stack.webhook.stop()
        harness.wait_for(lambda: not intent_files(stack.intents), 60, 0.05, "intents drained")
        time.sleep(LATE_SECONDS)  # anything late (a second swap, a re-download) would show by now
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
        "max_gets_per_file": max(data_gets.values()),
        "each_file_downloaded_once": all(v == 1 for v in data_gets.values()),
        "manifest_reads": gets.get("burst/1/metadata.json", 0),
        "config_swaps_seen_by_inotify": len(counter.swaps) - swaps_before,
        "config_swaps_agent_counter": status.get("config", {}).get("swaps"),
        "downloaded_files_agent_counter": status.get("counters", {}).get("downloaded_files"),
    }


def goals_of(rows: dict[str, list[dict[str, Any]]]) -> list[Goal]:
    """BENCHMARKS.md #3: each file downloaded once, at most two swaps, 1,000 events in 1 s."""
    out = []
    for name, runs in rows.items():
        out += [
            Goal(
                NAME,
                f"{name}: GETs of the most-read file",
                tuple(r["max_gets_per_file"] for r in runs),
                1,
                False,
            ),
            Goal(
                NAME,
                f"{name}: config.json swaps",
                tuple(r["config_swaps_seen_by_inotify"] for r in runs),
                2,
                False,
            ),
            Goal(
                NAME,
                f"{name}: {EVENTS:,} events sent",
                tuple(r["send_seconds"] for r in runs),
                1.0,
                False,
                "s",
            ),
        ]
    return out


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    with harness.workspace(NAME) as workdir:
        s3 = harness.S3(workdir)
        try:
            rounds = interleave(
                {
                    "manifest": lambda: variant(s3, workdir, True, seed=next(seeds)),
                    "settle": lambda: variant(s3, workdir, False, seed=next(seeds)),
                },
                args.repeats,
            )
        finally:
            s3.stop()
    rows: dict[str, list[dict[str, Any]]] = rounds.results
    goals = goals_of(rows)
    for goal in goals:
        print(f"[burst] {goal.name}: {spread_text(goal.samples)}", flush=True)
    harness.report(
        NAME, args.quick, {"repeats": args.repeats, "variants": rows, "goals": [g.as_dict() for g in goals]}
    )


if __name__ == "__main__":
    main()
