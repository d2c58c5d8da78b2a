"""Benchmark 4: download throughput, the agent's own staging code against the ``minio`` client.

Both sides end with their files durable, so like is compared with like:

(a) One large object (1 GiB; 256 MiB with --quick), uploaded multipart as any client does for
    big files (its ETag is not an MD5, so neither side hashes it). Per round, interleaved
    (the order alternates): ``fget_object`` then an fsync of the file; the agent's
    ``Stager.build`` of a one-file version (staging directory, space check, streamed download
    with write-behind, fsync, directory fsync); the same with write-behind turned off (what
    write-behind buys on this machine today); and moto's raw stream (read and discard: the
    server's own ceiling). Goal: median of the per-round ratios fget+fsync / agent >= 1.0.
(b) A model of 500 files of 100 KB (single-PUT, so the agent checks each file's MD5 against
    its ETag): the agent's ``Stager.build`` (``sync.download_concurrency``, each file fsynced by
    a pool beside the downloads) against a sequential ``fget_object`` loop followed by one
    syncfs (the cheapest way for that loop to be durable too), plus the agent with each
    download thread waiting for its own fsync, and the agent with every file's fsync handed
    to the pool (before 2026-12-06 even 100 KB files were; now only files of 1 MiB and up
    are). Goal: median
    per-round ratio >= 3.0. The full run adds a concurrency curve.

Page cache: every variant writes a fresh file (a new staging directory or a new path), and
every file is made durable inside the timed section, so no variant leaves dirty pages for the
next one. moto keeps each object in a temporary file and reads all of it into memory for every
GET; that file is in the page cache for every variant alike (the upload wrote it, and the raw
stream reads it first). Per run the report has wall seconds, the CPU seconds of this process
(the client side) and of the moto process (the server side): on a shared machine the CPU
figures and the per-round ratios are what to judge by, not the absolute rates.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent import libc, storage, writeback
from agent.stager import Stager, fsync_file
from agent.storage import Bucket, RemoteObject
from bench import harness
from bench.goals import Goal, Interleaved, interleave, spread_text
from modelsync.config import load_config

MiB = 1024 * 1024
REPEATS = 3


class RepeatReader(io.RawIOBase):
    """``size`` bytes made of one random block repeated: upload data without holding it."""

    def __init__(self, size: int, block: bytes) -> None:
        self.size, self.block, self.pos = size, block, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.size - self.pos
        n = min(n, self.size - self.pos)
        out = bytearray()
        while len(out) < n:
            offset = (self.pos + len(out)) % len(self.block)
            out += self.block[offset : offset + n - len(out)]
        self.pos += n
        return bytes(out)


@dataclass(frozen=True)
class Run:
    seconds: float
    client_cpu: float  # this process: the agent's code or the minio client
    server_cpu: float  # the moto process


def measured(s3: harness.S3, fn: Callable[[], None]) -> Callable[[], Run]:
    def run() -> Run:
        before, server_before, started = os.times(), harness.cpu_seconds(s3.proc.pid), time.perf_counter()
        fn()
        seconds, after = time.perf_counter() - started, os.times()
        client = after.user + after.system - before.user - before.system
        return Run(seconds, client, harness.cpu_seconds(s3.proc.pid) - server_before)

    return run


def put_large(s3: harness.S3, bucket: str, key: str, size: int) -> None:
    s3.client.put_object(bucket, key, RepeatReader(size, os.urandom(8 * MiB)), size, part_size=64 * MiB)


def remote(bucket: Bucket, key: str) -> RemoteObject:
    return next(o for o in bucket.list(key) if o.key == key)


def raw_stream(s3: harness.S3, bucket: str, key: str) -> None:
    response = s3.client.get_object(bucket, key)
    try:
        for _ in response.stream(MiB):
            pass
    finally:
        response.close()
        response.release_conn()


def syncfs_dir(path: Path) -> None:
    """Everything written on ``path``'s filesystem is on disk: one call for the whole loop."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if libc.function("syncfs")(fd) != 0:
            raise OSError(f"syncfs {path} failed")
    finally:
        os.close(fd)


@contextlib.contextmanager
def every_fsync_deferred() -> Iterator[None]:
    saved = storage.DEFER_FSYNC_MIN_BYTES
    storage.DEFER_FSYNC_MIN_BYTES = 0  # small files too go to the pool (the design before)
    try:
        yield
    finally:
        storage.DEFER_FSYNC_MIN_BYTES = saved


@contextlib.contextmanager
def write_behind_off() -> Iterator[None]:
    saved = writeback.WINDOW_BYTES
    writeback.WINDOW_BYTES = 1 << 62  # no window ever completes: write everything, then fsync
    try:
        yield
    finally:
        writeback.WINDOW_BYTES = saved


def summarize(runs: Interleaved, baseline: str, ours: str) -> dict[str, Any]:
    ratios = runs.ratios(baseline, ours, key=lambda r: r.seconds)
    return {
        "ratio_samples": [round(x, 3) for x in ratios],
        "ratio": spread_text(ratios),
        "runs": {name: [asdict(r) for r in rows] for name, rows in runs.results.items()},
        "median_seconds": {
            n: round(harness.median(runs.values(n, lambda r: r.seconds)), 3) for n in runs.results
        },
        "median_client_cpu": {
            n: round(harness.median(runs.values(n, lambda r: r.client_cpu)), 3) for n in runs.results
        },
        "median_server_cpu": {
            n: round(harness.median(runs.values(n, lambda r: r.server_cpu)), 3) for n in runs.results
        },
    }


def large(
    s3: harness.S3, agent_bucket: Bucket, bucket: str, workdir: Path, size: int
) -> tuple[dict[str, Any], Goal]:
    key = "big/1/model.bin"
    print(f"[download] uploading {size >> 20} MiB", flush=True)
    put_large(s3, bucket, key, size)
    obj = remote(agent_bucket, key)
    models = workdir / "models"
    models.mkdir(exist_ok=True)
    stager = Stager(agent_bucket, models, 4, threading.Event())
    counter = iter(range(1_000_000))

    def fget_fsync() -> None:
        dest = workdir / f"fget-{next(counter)}.bin"
        s3.client.fget_object(bucket, key, str(dest))
        fsync_file(dest)
        dest.unlink()

    def agent() -> None:
        staged = stager.build("big", 1, {"model.bin": obj}, None)
        shutil.rmtree(staged.directory)

    def agent_no_write_behind() -> None:
        with write_behind_off():
            agent()

    raw_stream(s3, bucket, key)  # moto's copy of the object is in the page cache for everyone
    runs = interleave(
        {
            "fget_object+fsync": measured(s3, fget_fsync),
            "agent": measured(s3, agent),
            "agent_without_write_behind": measured(s3, agent_no_write_behind),
            "moto_raw_stream": measured(s3, lambda: raw_stream(s3, bucket, key)),
        },
        REPEATS,
    )
    s3.client.remove_object(bucket, key)
    result = {"bytes": size, "repeats": REPEATS, **summarize(runs, "fget_object+fsync", "agent")}
    result["write_behind_ratio"] = spread_text(
        runs.ratios("agent_without_write_behind", "agent", key=lambda r: r.seconds)
    )
    result["median_MiB_per_s"] = {n: round(size / MiB / s, 1) for n, s in result["median_seconds"].items()}
    goal = Goal(
        "download",
        f"{size >> 20} MiB: agent vs fget_object+fsync",
        tuple(runs.ratios("fget_object+fsync", "agent", key=lambda r: r.seconds)),
        1.0,
        unit="x",
    )
    return result, goal


def many(
    s3: harness.S3, agent_bucket: Bucket, bucket: str, workdir: Path, count: int, size: int, curve: bool
) -> tuple[dict[str, Any], Goal]:
    items = {f"many/1/file-{i:04d}.bin": os.urandom(size) for i in range(count)}
    s3.put_many(bucket, items)
    listing = {o.key.split("/", 2)[2]: o for o in agent_bucket.list("many/1/")}
    assert len(listing) == count
    models = workdir / "models"
    models.mkdir(exist_ok=True)
    stop = threading.Event()
    counter = iter(range(1_000_000))

    def fget_loop() -> None:
        target = workdir / f"fget-{next(counter)}"
        target.mkdir()
        for key in items:
            s3.client.fget_object(bucket, key, str(target / key.rsplit("/", 1)[1]))
        syncfs_dir(target)
        shutil.rmtree(target)

    def stage(concurrency: int, deferred_fsync: bool = True) -> Callable[[], None]:
        def run() -> None:
            staged = Stager(agent_bucket, models, concurrency, stop, deferred_fsync=deferred_fsync).build(
                "many", 1, listing, None
            )
            assert staged.downloaded == count
            shutil.rmtree(staged.directory)

        return run

    def stage_all_deferred() -> None:
        with every_fsync_deferred():
            stage(default)()

    default = 4  # sync.download_concurrency's default
    variants = {
        "fget_object_loop+syncfs": measured(s3, fget_loop),
        "agent": measured(s3, stage(default)),
        "agent_fsync_inline": measured(s3, stage(default, deferred_fsync=False)),
        "agent_fsync_all_deferred": measured(s3, stage_all_deferred),
    }
    if curve:
        variants.update({f"agent_concurrency_{c}": measured(s3, stage(c)) for c in (1, 8, 16)})
    runs = interleave(variants, REPEATS)
    result: dict[str, Any] = {"files": count, "file_bytes": size, "repeats": REPEATS, "concurrency": default}
    result.update(summarize(runs, "fget_object_loop+syncfs", "agent"))
    result["deferred_fsync_ratio"] = spread_text(
        runs.ratios("agent_fsync_inline", "agent", key=lambda r: r.seconds)
    )
    result["small_files_inline_ratio"] = spread_text(
        runs.ratios("agent_fsync_all_deferred", "agent", key=lambda r: r.seconds)
    )
    result.update(moto_bound(runs))
    goal = Goal(
        "download",
        f"{count} x {size // 1024} KB: agent vs sequential fget_object loop",
        tuple(runs.ratios("fget_object_loop+syncfs", "agent", key=lambda r: r.seconds)),
        3.0,
        unit="x",
        note=(
            f"moto's bound (loop s / moto CPU-s of the agent's GETs) {result['moto_bound']}; "
            f"moto busy {result['moto_busy_share_of_agent_run']} of the agent's run"
        ),
    )
    return result, goal


def moto_bound(runs: Interleaved) -> dict[str, str]:
    """moto serves one request at a time on one core: no client can finish before moto has spent
    its CPU on the agent's 500 GETs, so loop seconds / that CPU bounds the ratio in each round."""
    loop_seconds = runs.values("fget_object_loop+syncfs", lambda r: r.seconds)
    agent_moto_cpu = runs.values("agent", lambda r: r.server_cpu)
    bounds = [a / b for a, b in zip(loop_seconds, agent_moto_cpu, strict=True)]
    busy = [r.server_cpu / r.seconds for r in runs.results["agent"]]
    return {"moto_bound": spread_text(bounds), "moto_busy_share_of_agent_run": spread_text(busy)}


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    size = 256 * MiB if args.quick else 1024 * MiB
    with harness.workspace("download") as workdir:
        s3 = harness.S3(workdir)
        try:
            bucket = s3.bucket("dl")
            stack = harness.Stack(s3, bucket, workdir / "stack")
            agent_bucket = Bucket(load_config(stack.config_path).minio, pool_size=20)
            result_many, goal_many = many(s3, agent_bucket, bucket, workdir, 500, 100 * 1024, not args.quick)
            print(
                f"[download] many: ratio {result_many['ratio']}, seconds {result_many['median_seconds']}",
                flush=True,
            )
            result_large, goal_large = large(s3, agent_bucket, bucket, workdir, size)
            print(
                f"[download] large: ratio {result_large['ratio']}, MiB/s {result_large['median_MiB_per_s']}",
                flush=True,
            )
        finally:
            s3.stop()
    harness.report(
        "download",
        args.quick,
        {
            "large": result_large,
            "many_small": result_many,
            "goals": [goal_large.as_dict(), goal_many.as_dict()],
        },
    )
    print(f"[download] write-behind on/off ratio {result_large['write_behind_ratio']}")
    print(f"[download] deferred vs inline fsync ratio {result_many['deferred_fsync_ratio']}")
    print(f"[download] small files inline vs all deferred ratio {result_many['small_files_inline_ratio']}")


if __name__ == "__main__":
    main()
