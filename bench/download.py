"""Benchmark 4: download throughput, the agent's code against the ``minio`` client.

(a) One large object (1 GiB; 256 MiB with --quick), uploaded multipart as any client does for
    big files (so its ETag is not an MD5 and neither side hashes it). Alternating runs of
    ``minio``'s ``fget_object`` and the agent's ``Bucket.download`` (stream, fsync), median of
    several; plus a curve by part count of parallel ranged GETs (a prototype in this file, not
    in the agent: it is adopted only if the curve says it helps).
(b) A model of 500 files of 100 KB (single-PUT, so MD5-verified by the agent): the agent's
    ``Stager.build`` (bounded pool, ``sync.download_concurrency``) against a sequential
    ``fget_object`` loop, and a curve by concurrency.

Both sides read from the same moto server process in the same run. moto is a Python server:
its own ceiling is reported as the raw ``get_object`` stream rate (read and discard).
"""

from __future__ import annotations

import io
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.stager import Stager
from agent.storage import Bucket, RemoteObject
from bench import harness
from modelsync.config import load_config

MiB = 1024 * 1024


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


def ranged(s3: harness.S3, bucket: str, obj: RemoteObject, dest: Path, parts: int) -> None:
    """Prototype: ``parts`` concurrent ranged GETs, each ``pwrite``-ing its slice; then fsync."""
    client = s3.client
    size = obj.size
    bounds = [(i * size // parts, (i + 1) * size // parts) for i in range(parts)]
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)

        def one(bound: tuple[int, int]) -> int:
            start, end = bound
            response = client.get_object(bucket, obj.key, offset=start, length=end - start)
            pos = start
            try:
                for chunk in response.stream(MiB):
                    os.pwrite(fd, chunk, pos)
                    pos += len(chunk)
            finally:
                response.close()
                response.release_conn()
            return pos - start

        with ThreadPoolExecutor(parts) as pool:
            total = sum(pool.map(one, bounds))
        assert total == size, (total, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def large(
    s3: harness.S3, agent_bucket: Bucket, bucket: str, workdir: Path, size: int, reps: int
) -> dict[str, Any]:
    key = "big/1/model.bin"
    print(f"[download] uploading {size >> 20} MiB", flush=True)
    put_large(s3, bucket, key, size)
    obj = remote(agent_bucket, key)
    dest = workdir / "large.bin"
    stop = threading.Event()
    samples: dict[str, list[float]] = {
        "fget_object": [],
        "fsync_after_fget": [],
        "agent": [],
        "moto_raw_stream": [],
    }
    curve: dict[int, list[float]] = {p: [] for p in (1, 2, 4, 8)}
    for rep in range(reps):
        samples["moto_raw_stream"].append(timed(lambda: raw_stream(s3, bucket, key)))
        samples["fget_object"].append(timed(lambda: s3.client.fget_object(bucket, key, str(dest))))
        samples["fsync_after_fget"].append(timed(lambda: fsync_path(dest)))  # what fget skips
        dest.unlink()
        samples["agent"].append(timed(lambda: agent_bucket.download(obj, dest, stop)))
        dest.unlink()
        for parts in curve:
            curve[parts].append(timed(lambda p=parts: ranged(s3, bucket, obj, dest, p)))  # type: ignore[misc]
            dest.unlink()
        print(f"[download] large rep {rep}: { {k: round(v[-1], 2) for k, v in samples.items()} }", flush=True)

    def mbps(seconds: list[float]) -> float:
        return round(size / MiB / harness.median(seconds), 1)

    result = {
        "bytes": size,
        "reps": reps,
        "median_MiB_per_s": {k: mbps(v) for k, v in samples.items()},
        "ranged_curve_MiB_per_s": {str(p): mbps(v) for p, v in curve.items()},
        "seconds": {k: [round(x, 3) for x in v] for k, v in samples.items()},
        "ranged_seconds": {str(p): [round(x, 3) for x in v] for p, v in curve.items()},
    }
    result["ratio_agent_to_fget"] = round(
        harness.median(samples["fget_object"]) / harness.median(samples["agent"]), 3
    )
    s3.client.remove_object(bucket, key)
    return result


def many(
    s3: harness.S3, agent_bucket: Bucket, bucket: str, workdir: Path, count: int, size: int, reps: int
) -> dict[str, Any]:
    items = {f"many/1/file-{i:04d}.bin": os.urandom(size) for i in range(count)}
    s3.put_many(bucket, items)
    listing = {o.key.split("/", 2)[2]: o for o in agent_bucket.list("many/1/")}
    assert len(listing) == count
    models = workdir / "models"
    models.mkdir(exist_ok=True)
    stop = threading.Event()
    fget_dir = workdir / "fget"

    def fget_loop() -> None:
        fget_dir.mkdir()
        for key in items:
            s3.client.fget_object(bucket, key, str(fget_dir / key.rsplit("/", 1)[1]))

    def stage(concurrency: int) -> None:
        staged = Stager(agent_bucket, models, concurrency, stop).build("many", 1, listing, None)
        assert staged.downloaded == count
        shutil.rmtree(staged.directory)

    samples: dict[str, list[float]] = {"fget_object_loop": []}
    curve: dict[int, list[float]] = {c: [] for c in (1, 2, 4, 8, 16)}
    for rep in range(reps):
        samples["fget_object_loop"].append(timed(fget_loop))
        shutil.rmtree(fget_dir)
        for concurrency in curve:
            curve[concurrency].append(timed(lambda c=concurrency: stage(c)))  # type: ignore[misc]
        print(
            f"[download] many rep {rep}: fget loop {samples['fget_object_loop'][-1]:.2f}s, "
            f"agent { {c: round(v[-1], 2) for c, v in curve.items()} }",
            flush=True,
        )
    default = 4
    fget = harness.median(samples["fget_object_loop"])
    return {
        "files": count,
        "file_bytes": size,
        "reps": reps,
        "median_seconds": {
            "fget_object_loop": round(fget, 3),
            **{f"agent_concurrency_{c}": round(harness.median(v), 3) for c, v in curve.items()},
        },
        "speedup_vs_fget_loop": {str(c): round(fget / harness.median(v), 2) for c, v in curve.items()},
        "default_concurrency": default,
        "speedup_at_default": round(fget / harness.median(curve[default]), 2),
        "seconds": {
            "fget_object_loop": [round(x, 3) for x in samples["fget_object_loop"]],
            **{str(c): [round(x, 3) for x in v] for c, v in curve.items()},
        },
    }


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    size, reps_large, reps_many = (256 * MiB, 2, 2) if args.quick else (1024 * MiB, 3, 3)
    with harness.workspace("download") as workdir:
        s3 = harness.S3(workdir)
        try:
            bucket = s3.bucket("dl")
            stack = harness.Stack(s3, bucket, workdir / "stack")
            agent_bucket = Bucket(load_config(stack.config_path).minio, pool_size=20)
            result_many = many(s3, agent_bucket, bucket, workdir, 500, 100 * 1024, reps_many)
            result_large = large(s3, agent_bucket, bucket, workdir, size, reps_large)
        finally:
            s3.stop()
    harness.report(
        "download",
        args.quick,
        {
            "large": result_large,
            "many_small": result_many,
            "goals_met": {
                "large_ratio_ge_0.95": result_large["ratio_agent_to_fget"] >= 0.95,
                "many_small_ge_3x": result_many["speedup_at_default"] >= 3,
            },
        },
    )
    print(f"[download] large {result_large['median_MiB_per_s']} ratio {result_large['ratio_agent_to_fget']}")
    print(f"[download] ranged curve {result_large['ranged_curve_MiB_per_s']}")
    print(f"[download] many {result_many['median_seconds']} speedup {result_many['speedup_vs_fget_loop']}")


if __name__ == "__main__":
    main()
