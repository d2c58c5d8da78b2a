"""The download path against moto's server and a real file system: write-behind, fsyncs run
beside the downloads, and what a failure leaves (nothing to publish, no descriptor, no thread)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from agent import durability
from agent.durability import DeferredFsync
from agent.stager import Stager
from agent.storage import Bucket as AgentBucket
from agent.storage import Cancelled, RemoteObject
from agent.writeback import WriteBehind
from modelsync.config import load_config
from modelsync.errors import ObjectChangedError, PublishError
from tests.support.s3 import Bucket
from tests.support.volume import Volume

MiB = 1024 * 1024


def open_files(under: Path) -> list[str]:
    """The paths under ``under`` this process holds open (sockets of the HTTP pool come and go)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(under)):
            found.append(target)
    return found


def helper_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("fsync", "write-behind"))]


def agent_bucket(volume: Volume) -> AgentBucket:
    return AgentBucket(load_config(volume.config_path, env={}).minio, pool_size=8)


def listing(bucket: AgentBucket, prefix: str) -> dict[str, RemoteObject]:
    return {o.key[len(prefix) :]: o for o in bucket.list(prefix)}


def test_many_small_files_in_parallel_arrive_whole(volume: Volume, bucket: Bucket) -> None:
    files = {f"f{i:03d}.bin": os.urandom(10_000 + i) for i in range(60)}
    for name, data in files.items():
        bucket.put(f"m/1/{name}", data)
    agent = agent_bucket(volume)
    staged = Stager(agent, volume.models, 8, threading.Event()).build("m", 1, listing(agent, "m/1/"), None)
    assert staged.downloaded == 60
    assert {p.name: p.read_bytes() for p in staged.directory.iterdir()} == files
    assert open_files(volume.root) == [], "every descriptor handed to the fsync pool is closed"
    assert helper_threads() == [], "the fsync pool is gone once the version is staged"


def test_a_changed_object_among_parallel_downloads_publishes_nothing(volume: Volume, bucket: Bucket) -> None:
    """Concurrency keeps the If-Match check: one object overwritten after the listing (same
    size) dooms the version, and no staging directory, descriptor or thread is left."""
    for i in range(40):
        bucket.put(f"m/1/f{i:03d}.bin", os.urandom(20_000))
    agent = agent_bucket(volume)
    listed = listing(agent, "m/1/")
    bucket.put("m/1/f017.bin", os.urandom(20_000))
    with pytest.raises(ObjectChangedError, match=r"f017\.bin changed since it was listed"):
        Stager(agent, volume.models, 8, threading.Event()).build("m", 1, listed, None)
    assert [p.name for p in (volume.models / "m").iterdir()] == []
    assert open_files(volume.root) == []
    assert helper_threads() == []


def test_a_large_file_streams_through_write_behind_intact(volume: Volume, bucket: Bucket) -> None:
    data = os.urandom(40 * MiB)  # more than two 16 MiB windows: the flusher runs
    bucket.put("big/1/weights.bin", data)
    agent = agent_bucket(volume)
    staged = Stager(agent, volume.models, 4, threading.Event()).build(
        "big", 1, listing(agent, "big/1/"), None
    )
    assert (staged.directory / "weights.bin").read_bytes() == data
    assert helper_threads() == []


def test_a_cancelled_download_leaves_nothing(volume: Volume, bucket: Bucket) -> None:
    bucket.put("big/1/weights.bin", os.urandom(40 * MiB))
    agent = agent_bucket(volume)
    stop = threading.Event()
    seen = 0

    def stop_after_some(count: int) -> None:
        nonlocal seen
        seen += count
        if seen > 20 * MiB:  # after the first window went to the flusher
            stop.set()

    obj = listing(agent, "big/1/")["weights.bin"]
    dest = volume.root / "weights.bin"
    with pytest.raises(Cancelled):
        agent.download(obj, dest, stop, stop_after_some)
    assert helper_threads() == [], "the flusher stops with the download"
    assert open_files(volume.root) == []


def test_write_behind_bounds_the_dirty_bytes(tmp_path: Path) -> None:
    """The writer runs ahead of the disk by at most ``max_dirty``, and the file is whole."""
    chunk = os.urandom(MiB)
    path = tmp_path / "file"
    with open(path, "wb") as handle, WriteBehind(handle.fileno(), 2 * MiB, 4 * MiB) as behind:
        for written in range(MiB, 33 * MiB, MiB):
            handle.write(chunk)
            if behind.due(written):
                handle.flush()
                behind.advance(written)
                assert behind.written - behind.flushed <= 4 * MiB
        handle.flush()
        behind.close()
        assert behind.flushed >= 32 * MiB - 4 * MiB, "the flusher kept up to within the bound"
    assert path.read_bytes() == chunk * 32
    assert helper_threads() == []


def test_a_failed_fsync_is_a_publish_error_naming_the_file(tmp_path: Path) -> None:
    """fsync of a pipe fails (EINVAL) as a disk error would: wait() raises, fds are closed."""
    deferred = DeferredFsync(threads=2)
    good = os.open(tmp_path / "ok", os.O_WRONLY | os.O_CREAT, 0o644)
    read_end, write_end = os.pipe()
    os.close(write_end)
    deferred.submit(good, tmp_path / "ok")
    deferred.submit(read_end, tmp_path / "weights.bin")
    with pytest.raises(PublishError, match=r"cannot write .*weights.bin: fsync failed"):
        deferred.wait()
    deferred.close()
    assert open_files(tmp_path) == []
    with pytest.raises(OSError):
        os.fstat(read_end)  # the pipe's end was closed too


def test_a_flusher_that_fails_never_holds_the_writer(tmp_path: Path) -> None:
    """sync_file_range on a pipe fails (ESPIPE): the writer goes on (its fsync reports errors)."""
    read_end, write_end = os.pipe()
    try:
        behind = WriteBehind(read_end, MiB, 2 * MiB)
        writer = threading.Thread(target=lambda: [behind.advance(n * MiB) for n in range(1, 40)])
        writer.start()
        writer.join(timeout=20)
        assert not writer.is_alive(), "the writer waited for a flusher that had given up"
        assert behind.failed and behind.flushed == 0
        behind.close()
        assert helper_threads() == []
    finally:
        os.close(read_end)
        os.close(write_end)


def test_small_files_are_fsynced_inline_and_large_ones_by_the_pool(volume: Volume, bucket: Bucket) -> None:
    """Below DEFER_FSYNC_MIN_BYTES the hand-off costs more than the wait: no pool job for it."""
    bucket.put("mix/1/small.bin", os.urandom(100 * 1024))
    bucket.put("mix/1/large.bin", os.urandom(2 * MiB))
    agent = agent_bucket(volume)
    objects = listing(agent, "mix/1/")
    deferred = DeferredFsync(threads=2)
    try:
        agent.download(objects["small.bin"], volume.root / "small.bin", threading.Event(), None, deferred)
        assert deferred.futures == [], "a 100 KB file was fsynced by its download thread"
        agent.download(objects["large.bin"], volume.root / "large.bin", threading.Event(), None, deferred)
        assert len(deferred.futures) == 1, "a 2 MiB file's fsync went to the pool"
        deferred.wait()
    finally:
        deferred.close()
    assert open_files(volume.root) == []


def test_small_files_go_to_the_pool_once_the_disk_is_slow(
    volume: Volume, bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once most inline fsyncs were slow, a small file's fsync is not waited for."""
    monkeypatch.setattr(durability, "SLOW_FSYNC_SECONDS", 0.0)  # every fsync counts as slow
    for i in range(durability.FSYNC_SAMPLES + 1):
        bucket.put(f"slow/1/f{i}.bin", os.urandom(10_000))
    agent = agent_bucket(volume)
    objects = sorted(listing(agent, "slow/1/").items())
    deferred = DeferredFsync(threads=2)
    try:
        for name, obj in objects[:-1]:
            agent.download(obj, volume.root / name, threading.Event(), None, deferred)
        assert deferred.futures == [] and deferred.disk_is_slow
        name, obj = objects[-1]
        agent.download(obj, volume.root / name, threading.Event(), None, deferred)
        assert len(deferred.futures) == 1, "the file after the slow ones went to the pool"
        deferred.wait()
    finally:
        deferred.close()
    assert open_files(volume.root) == []
