"""The intent log (intent version 3): frames, torn tails, the writer's lock, rotation.

A real file system and real processes: the lock is a kernel ``flock``, and a writer killed
with SIGKILL must leave its segment finished with every frame it made durable.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

from modelsync import intentlog
from modelsync.intentbatch import GroupCommit
from modelsync.intentlog import HEADER, MAGIC, SEGMENT_SUFFIX, IntentLog
from modelsync.intents import IntentWriter
from tests.support import ROOT
from tests.support.intents import documents_on_disk, intents_on_disk


def payloads(log: IntentLog) -> list[bytes]:
    assert log.path is not None
    return [frame.payload for frame in intentlog.read_frames(log.path, 0).frames]


def test_frames_read_back_in_order_and_the_rest_of_the_segment_is_zeros(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, segment_bytes=64 * 1024)
    written = [json.dumps({"n": n}).encode() for n in range(3)]
    for payload in written:
        log.append(payload)
    assert log.path is not None and log.path.name.endswith(SEGMENT_SUFFIX)
    scan = intentlog.read_frames(log.path, 0)
    assert [f.payload for f in scan.frames] == written and not scan.torn
    assert scan.end == sum(HEADER.size + len(p) for p in written)
    assert intentlog.read_frames(log.path, scan.frames[1].offset).frames == scan.frames[1:]
    data = log.path.read_bytes()
    assert len(data) == 64 * 1024 and not any(data[scan.end :])
    assert [p.name for p in tmp_path.iterdir()] == [log.path.name], "no temp file left"


def test_a_segment_is_finished_only_once_its_writer_closes_it(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, segment_bytes=8192)
    log.append(b"{}")
    assert log.path is not None
    path = log.path
    assert not intentlog.finished(path)
    log.close()
    assert intentlog.finished(path)


def test_a_writer_killed_mid_run_leaves_a_finished_segment_with_every_acknowledged_frame(
    tmp_path: Path,
) -> None:
    script = (
        "import sys\nfrom pathlib import Path\nfrom modelsync.intentlog import IntentLog\n"
        "log = IntentLog(Path(sys.argv[1]))\n"
        "for n in range(50):\n"
        "    log.append(b'{\"n\": %d}' % n)\n"
        "    print(n, flush=True)\n"
        "sys.stdin.read()\n"
    )
    writer = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert writer.stdout is not None
    acknowledged = [int(writer.stdout.readline()) for _ in range(50)]
    [segment] = tmp_path.glob(f"*{SEGMENT_SUFFIX}")
    assert not intentlog.finished(segment), "held while the writer lives"
    writer.send_signal(signal.SIGKILL)
    writer.wait(10)
    assert intentlog.finished(segment)
    frames = intentlog.read_frames(segment, 0).frames
    assert [json.loads(f.payload)["n"] for f in frames] == acknowledged


def test_a_torn_or_partial_frame_ends_the_read_and_says_so(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, segment_bytes=8192)
    log.append(b'{"good": 1}')
    assert log.path is not None
    end = intentlog.read_frames(log.path, 0).end
    with open(log.path, "r+b") as handle:
        handle.seek(end)
        handle.write(HEADER.pack(MAGIC, 7, zlib.crc32(b"payload") ^ 1) + b"payload")
    scan = intentlog.read_frames(log.path, 0)
    assert [f.payload for f in scan.frames] == [b'{"good": 1}']
    assert scan.torn and scan.end == end
    with open(log.path, "r+b") as handle:  # a header whose payload runs past the file
        handle.seek(end)
        handle.write(HEADER.pack(MAGIC, 1 << 20, 0))
    assert intentlog.read_frames(log.path, 0).torn


def test_a_full_segment_is_finished_and_the_next_one_opened(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, segment_bytes=4096)
    payload = b"x" * 1000
    for _ in range(9):  # four frames of 1012 bytes fit a segment of 4096
        log.append(payload)
    segments = sorted(tmp_path.glob(f"*{SEGMENT_SUFFIX}"))
    assert len(segments) == log.segments_opened == 3
    assert [intentlog.finished(s) for s in segments] == [True, True, False]
    assert sum(len(intentlog.read_frames(s, 0).frames) for s in segments) == 9


def test_a_segment_deleted_or_moved_away_is_never_written_again(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, segment_bytes=8192)
    log.append(b'{"n": 1}')
    assert log.path is not None
    first = log.path
    first.unlink()
    log.append(b'{"n": 2}')
    assert log.path != first and payloads(log) == [b'{"n": 2}']
    second = log.path
    assert second is not None
    second.rename(tmp_path / f".hidden{SEGMENT_SUFFIX}")
    log.append(b'{"n": 3}')
    assert log.path not in (first, second) and payloads(log) == [b'{"n": 3}']


def test_a_forked_child_opens_a_segment_of_its_own(tmp_path: Path) -> None:
    log = IntentLog(tmp_path, segment_bytes=8192)
    log.append(b'{"who": "parent"}')
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's exit code is the assertion
        try:
            log.append(b'{"who": "child"}')
            os._exit(0 if log.path is not None and log.path.exists() else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    log.append(b'{"who": "parent again"}')
    by_segment = {s.name: [f.payload for f in intentlog.read_frames(s, 0).frames] for s in tmp_path.iterdir()}
    assert sorted(by_segment.values()) == sorted(
        [[b'{"who": "parent"}', b'{"who": "parent again"}'], [b'{"who": "child"}']]
    )
    assert log.path is not None and not intentlog.finished(log.path), "the child's exit did not unlock"


def test_a_commit_too_large_for_a_segment_goes_to_version_1_files(tmp_path: Path) -> None:
    writer = IntentWriter(tmp_path)
    group = GroupCommit(tmp_path, log=IntentLog(tmp_path, segment_bytes=4096))
    many = [
        writer.new(
            "object",
            action="put",
            event_name="s3:ObjectCreated:Put",
            bucket="b",
            key=f"m/1/file-{n}.bin",
            model="m",
            version=1,
            path=f"file-{n}.bin",
        )
        for n in range(20)
    ]
    group.commit(many)
    group.commit(many[:1])
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(f"{i['id']}.json" for i in many)
    assert len(documents_on_disk(tmp_path)) == 21, "twenty files and one frame"
    assert set(intents_on_disk(tmp_path)) == {i["id"] for i in many}


def test_a_hand_made_length_field_cannot_make_the_reader_allocate_it(tmp_path: Path) -> None:
    """A sparse 2 GiB file whose header claims a 2 GiB payload: the reader reads no more than
    a segment's size (the most a webhook writes) and calls the rest torn. Run with an address
    space limit of 1 GiB, as a reader that believed the length would fail with MemoryError."""
    segment = tmp_path / f"hand-made{SEGMENT_SUFFIX}"
    length = (1 << 31) - HEADER.size
    with open(segment, "wb") as handle:
        handle.write(HEADER.pack(MAGIC, length, 0))
        handle.truncate(HEADER.size + length)
    script = (
        "import resource, sys\nfrom pathlib import Path\nfrom modelsync import intentlog\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "scan = intentlog.read_frames(Path(sys.argv[1]), 0)\n"
        "print(len(scan.frames), scan.end, scan.torn)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(segment)], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "0", "True"]


def test_a_forked_child_does_not_keep_its_parents_segment_held(tmp_path: Path) -> None:
    """The child inherits the parent's descriptor; once it has a segment of its own it lets go
    of it, so the parent's segment is finished when the parent closes it, child alive or not."""
    log = IntentLog(tmp_path, segment_bytes=8192)
    log.append(b'{"who": "parent"}')
    parent_segment = log.path
    assert parent_segment is not None
    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child only writes and waits
        try:
            os.close(ready_r), os.close(hold_w)
            log.append(b'{"who": "child"}')
            os.write(ready_w, b"x")
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w), os.close(hold_r)
    try:
        assert os.read(ready_r, 1) == b"x"
        log.close()
        assert intentlog.finished(parent_segment), "the child still holds the parent's segment"
    finally:
        os.close(hold_w)
        os.waitpid(pid, 0)
        os.close(ready_r)


def test_only_old_temp_files_no_writer_holds_are_removed(tmp_path: Path) -> None:
    old = time.time() - 3600
    abandoned = tmp_path / ".1-a.intentlog.tmp-0001"
    abandoned.write_bytes(bytes(4096))
    held = tmp_path / ".2-b.intentlog.tmp-0002"
    held.write_bytes(bytes(4096))
    fresh = tmp_path / ".3-c.json.tmp-0003"
    fresh.write_bytes(b"{}")
    kept = [held, fresh, tmp_path / "4-d.json", tmp_path / ".5-e.intentlog.tmp-dir"]
    kept[2].write_bytes(b"{}")
    kept[3].mkdir()
    for path in (abandoned, held, kept[2], kept[3]):
        os.utime(path, (old, old))
    with open(held, "rb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # a webhook filling it with zeros right now
        assert intentlog.remove_abandoned_temp_files(tmp_path) == [abandoned.name]
    assert not abandoned.exists() and all(p.exists() for p in kept)


def test_no_intents_directory_means_no_temp_files_not_an_error(tmp_path: Path) -> None:
    """The agent cleans up at start; a directory removed since it was made must not stop it."""
    assert intentlog.remove_abandoned_temp_files(tmp_path / "intents") == []
