"""Benchmark 5: the agent's memory while it syncs a large model, and at rest.

A model of two 1 GiB files (2 GiB; 2 x 128 MiB with --quick), uploaded multipart once, is
synced by a fresh ``python -m agent run`` (its own models directory each time) that finds it
at start-up. Peak RSS is the kernel's own high-water mark (``VmHWM`` in
``/proc/<pid>/status``), read just before the agent stops; RSS is also sampled every 20 ms for
the timeline. Three variants, interleaved, ``--repeats`` times each:
  sync      the agent syncing the model: peak RSS, RSS after the sync, sync time;
  idle      the agent started on an empty bucket: RSS after 3 s;
  baseline  a bare ``python`` importing the libraries the agent uses: its RSS.
"""

from __future__ import annotations

import itertools
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.download import MiB, put_large
from bench.goals import Goal, interleave

NAME = "memory"
runs = itertools.count()


def sampler(pid: int, samples: list[tuple[float, int]], stop: threading.Event) -> threading.Thread:
    def sample() -> None:
        while not stop.is_set():
            rss = harness.proc_status(pid).get("VmRSS")
            if rss:
                samples.append((time.monotonic(), rss))
            time.sleep(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    return thread


def sync(s3: harness.S3, bucket: str, workdir: Path) -> dict[str, Any]:
    stack = harness.Stack(s3, bucket, workdir / f"sync-{next(runs)}", interval=3600)
    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    started = time.monotonic()
    try:
        agent = stack.start_agent()
        thread = sampler(agent.pid, samples, stop)
        harness.wait_for(lambda: "big" in stack.served(), 600, 0.05, "big:1 served")
        sync_seconds = time.monotonic() - started
        time.sleep(3)
        stop.set()
        thread.join()
        after = harness.proc_status(agent.pid)
    finally:
        stack.stop()
    return {
        "sync_seconds": round(sync_seconds, 2),
        "peak_rss_MiB_VmHWM": round(after.get("VmHWM", 0) / 1024, 1),
        "peak_rss_MiB_sampled": round(max((r for _, r in samples), default=0) / 1024, 1),
        "rss_MiB_after_sync": round(after.get("VmRSS", 0) / 1024, 1),
        "timeline_MiB": [(round(t - samples[0][0], 2), round(r / 1024, 1)) for t, r in samples[::10]]
        if samples
        else [],
    }


def idle(s3: harness.S3, workdir: Path) -> float:
    """RSS (MiB) of an agent 3 s after start-up on an empty bucket."""
    stack = harness.Stack(s3, s3.bucket("empty"), workdir / f"idle-{next(runs)}", interval=3600)
    try:
        agent = stack.start_agent()
        time.sleep(3)
        return round(harness.proc_status(agent.pid).get("VmRSS", 0) / 1024, 1)
    finally:
        stack.stop()


def baseline() -> float:
    """RSS (MiB) of a bare python with the agent's libraries imported."""
    code = "import minio, urllib3, jsonschema, watchdog, yaml;print(open('/proc/self/status').read())"
    out = subprocess.run([harness.PY, "-c", code], capture_output=True, text=True, check=True).stdout
    return round(next(int(x.split()[1]) for x in out.splitlines() if x.startswith("VmRSS:")) / 1024, 1)


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    file_size = 128 * MiB if args.quick else 1024 * MiB
    files = 2
    with harness.workspace(NAME) as workdir:
        s3 = harness.S3(workdir)
        try:
            bucket = s3.bucket("mem")
            for i in range(files):
                put_large(s3, bucket, f"big/1/part-{i}.bin", file_size)
            rounds = interleave(
                {
                    "sync": lambda: sync(s3, bucket, workdir),
                    "idle": lambda: idle(s3, workdir),
                    "baseline": baseline,
                },
                args.repeats,
            )
        finally:
            s3.stop()
    peaks = rounds.values("sync", lambda r: r["peak_rss_MiB_VmHWM"])
    base = rounds.values("baseline")
    model = f"{file_size * files / 2**30:g} GiB"
    goals = [
        Goal(NAME, f"peak RSS syncing {model} (VmHWM)", tuple(peaks), 80, False, " MiB", "stated as 80 MB"),
    ]
    data: dict[str, Any] = {
        "model_bytes": file_size * files,
        "files": files,
        "repeats": args.repeats,
        "peak_rss_MiB_VmHWM": harness.spread(peaks, 1),
        "rss_MiB_after_sync": harness.spread(rounds.values("sync", lambda r: r["rss_MiB_after_sync"]), 1),
        "sync_seconds": harness.spread(rounds.values("sync", lambda r: r["sync_seconds"]), 2),
        "idle_rss_MiB_empty_bucket": harness.spread(rounds.values("idle"), 1),
        "baseline_rss_MiB_python_with_imports": harness.spread(base, 1),
        "peak_over_baseline": harness.spread([p / b for p, b in zip(peaks, base, strict=True)], 2),
        "runs": rounds.results,
        "goals": [g.as_dict() for g in goals],
    }
    harness.report(NAME, args.quick, data)
    print({k: v for k, v in data.items() if k not in ("runs", "goals")})


if __name__ == "__main__":
    main()
