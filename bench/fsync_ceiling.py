"""Context for benchmark 2: how many small files per second this disk makes durable.

Each of N threads loops: write a 600-byte file to a temp name, fsync it, rename it into one
directory, fsync the directory (what one intent costs); plus the same with the directory fsync
shared (one per 8 files). No HTTP, no Python web stack: the ceiling the webhook cannot beat
while it writes one fsynced file per event. CPU busy and iowait shares come from /proc/stat.

At concurrency 1 nothing can be shared, so the latency of one durable write bounds the
webhook's c1 rate (MinIO replays its queue_dir store one event at a time). ``latency``
times, one after another and interleaved, three ways to make 600 bytes durable:

- ``intent_file``: what the webhook does per lone event: temp file, fsync, rename, directory
  fsync (two journal commits);
- ``new_file_fsync``: a new file and one fsync (one journal commit), the floor of any scheme
  that creates a file per event;
- ``overwrite_fdatasync``: overwriting an already written block of a preallocated file and
  fdatasync (no journal commit, only the device's cache flush), the floor of any durable write.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from bench import harness

DATA = b"x" * 600


def cpu_times() -> list[int]:
    with open("/proc/stat") as handle:
        return [int(x) for x in handle.readline().split()[1:]]


def run(directory: str, threads: int, seconds: float, dir_every: int) -> dict[str, Any]:
    os.makedirs(directory, exist_ok=True)
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def worker(n: int) -> None:
        i = 0
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        while time.monotonic() < stop:
            tmp = f"{directory}/.t-{n}-{i}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, DATA)
            os.fsync(fd)
            os.close(fd)
            os.replace(tmp, f"{directory}/{n}-{i}.json")
            i += 1
            if i % dir_every == 0:
                os.fsync(dfd)
        os.close(dfd)
        counts[n] = i

    before = cpu_times()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    after = cpu_times()
    delta = [a - b for a, b in zip(after, before, strict=True)]
    total = sum(delta) or 1
    return {
        "threads": threads,
        "dir_fsync_every": dir_every,
        "files_per_s": round(sum(counts) / seconds, 1),
        "cpu_busy_pct": round(100 * (total - delta[3] - delta[4]) / total, 1),
        "cpu_iowait_pct": round(100 * delta[4] / total, 1),
    }


def _intent_file(directory: str, dfd: int, i: int) -> None:
    tmp = f"{directory}/.a-{i}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, DATA)
    os.fsync(fd)
    os.close(fd)
    os.replace(tmp, f"{directory}/a-{i}.json")
    os.fsync(dfd)


def _new_file_fsync(directory: str, _dfd: int, i: int) -> None:
    fd = os.open(f"{directory}/b-{i}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.write(fd, DATA)
    os.fsync(fd)
    os.close(fd)


def latency(directory: str, count: int) -> dict[str, Any]:
    """Milliseconds per durable write at concurrency 1, the three ways interleaved."""
    os.makedirs(directory, exist_ok=True)
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    log = os.open(f"{directory}/log", os.O_RDWR | os.O_CREAT, 0o644)
    os.write(log, b"\0" * 4096 * 64)
    os.fsync(log)

    def overwrite(_directory: str, _dfd: int, i: int) -> None:
        os.pwrite(log, DATA, (i % 64) * 4096)
        os.fdatasync(log)

    ways = {"intent_file": _intent_file, "new_file_fsync": _new_file_fsync, "overwrite_fdatasync": overwrite}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for i in range(count):
        for name, way in ways.items():
            started = time.perf_counter()
            way(directory, dfd, i)
            times[name].append(1000 * (time.perf_counter() - started))
    os.close(log)
    os.close(dfd)
    return {name: harness.summary(values, 3) for name, values in times.items()}


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    seconds = 3.0 if args.quick else 8.0
    rows = []
    with harness.workspace("fsync") as workdir:
        for threads in (1, 4, 16, 64):
            for every in (1, 8):
                row = run(str(workdir / f"t{threads}-{every}"), threads, seconds, every)
                rows.append(row)
                print(f"[fsync] {row}", flush=True)
        c1 = latency(str(workdir / "latency"), 300 if args.quick else 1000)
        for name, row in c1.items():
            print(f"[fsync] c1 {name}: {row} ms", flush=True)
    harness.report(
        "fsync_ceiling", args.quick, {"seconds_per_run": seconds, "runs": rows, "c1_latency_ms": c1}
    )


if __name__ == "__main__":
    main()
