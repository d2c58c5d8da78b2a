"""The agent reads the webhook's intent log (version 3) while it is written, and deletes a
segment only once its writer is gone and every intent in it is done.

A real agent process, moto's S3 server, a real file system; the segment is written by the
webhook's own ``IntentLog`` held open by this test, as a webhook worker holds it.
"""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

from modelsync import intentlog
from modelsync.intentbatch import BATCH_SUFFIX, batch_document
from modelsync.intentlog import HEADER, MAGIC, SEGMENT_SUFFIX, IntentLog
from modelsync.intents import IntentWriter, new_intent_id
from tests.support.helpers import md5, served_models, wait_for
from tests.support.intents import failed_records, hostile_intent
from tests.support.processes import Process
from tests.support.s3 import Bucket
from tests.support.volume import Volume


def object_intent(bucket: Bucket, model: str, data: bytes) -> dict[str, Any]:
    key = f"{model}/1/model.bin"
    bucket.put(key, data)
    return hostile_intent(bucket.name, key=key, model=model, path="model.bin", etag=md5(data), size=len(data))


def frame(document: object) -> bytes:
    return json.dumps(document).encode()


def quiet_agent(volume: Volume, start_agent: Any) -> Process:
    volume.settings["sync"]["interval"] = 600  # only the intents can bring the models
    volume.write()
    agent: Process = start_agent()
    return agent


def test_intents_are_applied_as_they_are_appended_and_the_segment_goes_after_its_writer(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    quiet_agent(volume, start_agent)
    log = IntentLog(volume.intents)
    log.append(frame(object_intent(bucket, "alpha", b"alpha")))
    wait_for(lambda: "alpha" in served_models(volume.ovms_config), 60, what="alpha from the first frame")
    batch = batch_document([object_intent(bucket, "beta", b"beta"), object_intent(bucket, "gamma", b"g")])  # type: ignore[list-item]
    log.append(frame(batch))
    wait_for(lambda: {"beta", "gamma"} <= set(served_models(volume.ovms_config)), 60, what="the batch frame")
    assert log.path is not None
    segment = log.path
    assert segment.exists(), "a segment its writer still holds is kept"
    log.close()
    wait_for(lambda: not segment.exists(), 30, what="the finished segment deleted")
    assert (volume.models / "gamma" / "1" / "model.bin").read_bytes() == b"g"
    assert failed_records(volume) == {}


def test_a_frame_the_agent_refuses_goes_to_failed_alone_and_the_others_are_applied(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    quiet_agent(volume, start_agent)
    log = IntentLog(volume.intents)
    log.append(frame(object_intent(bucket, "alpha", b"alpha")))
    assert log.path is not None
    segment = log.path
    bad_offset = HEADER.size + len(frame(object_intent(bucket, "alpha", b"alpha")))
    log.append(frame({"intent_version": 1, "id": "not-an-intent"}))
    log.append(frame(object_intent(bucket, "beta", b"beta")))
    log.close()
    wait_for(lambda: {"alpha", "beta"} <= set(served_models(volume.ovms_config)), 60, what="both good frames")
    wait_for(lambda: not segment.exists(), 30, what="the segment deleted")
    failed = failed_records(volume)
    [name] = failed
    assert name == f"{segment.name}@{bad_offset}.json", failed
    assert "invalid intent" in failed[name]["error"] and "not-an-intent" in failed[name]["content"]


def test_a_torn_tail_left_by_a_crash_is_passed_over(volume: Volume, bucket: Bucket, start_agent) -> None:
    volume.intents.mkdir(parents=True, exist_ok=True)  # as the webhook's start-up leaves it
    log = IntentLog(volume.intents)
    log.append(frame(object_intent(bucket, "alpha", b"alpha")))
    assert log.path is not None
    segment = log.path
    end = intentlog.read_frames(segment, 0).end
    log.close()
    with open(segment, "r+b") as handle:  # what a crash in the middle of a write leaves
        handle.seek(end)
        handle.write(HEADER.pack(MAGIC, 500, 0) + b'{"half')
    agent = quiet_agent(volume, start_agent)
    wait_for(lambda: "alpha" in served_models(volume.ovms_config), 60, what="the frame before the tear")
    wait_for(lambda: not segment.exists(), 30, what="the segment deleted")
    assert "torn frame" in agent.log
    assert failed_records(volume) == {}


def test_hostile_segments_go_to_failed_and_the_frames_around_them_are_applied(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    """A FIFO, a link or a directory named like a segment; frames nested too deep for the JSON
    parser, or valid JSON that is no object; a batch file nested too deep: each is recorded in
    failed/ with its reason, none stops the loop, and the good frames beside them are applied."""
    agent = quiet_agent(volume, start_agent)
    outside = volume.root / "outside.intentlog"
    outside.write_bytes(b"secret")
    makers = [lambda p: os.mkfifo(p), lambda p: p.symlink_to(outside), lambda p: p.mkdir()]
    hostile = {f"{new_intent_id()}{SEGMENT_SUFFIX}": make for make in makers}
    for name, make in hostile.items():
        make(volume.intents / name)
    deep = f"{new_intent_id()}{BATCH_SUFFIX}"
    (volume.intents / deep).write_bytes(b"[" * 200_000)
    log = IntentLog(volume.intents)
    log.append(frame(object_intent(bucket, "alpha", b"alpha")))
    assert log.path is not None
    segment = log.path
    offsets = [intentlog.read_frames(segment, 0).end]
    log.append(b"[" * 200_000)
    offsets.append(intentlog.read_frames(segment, 0).end)
    log.append(b"[1, 2, 3]")
    log.append(frame(object_intent(bucket, "beta", b"beta")))
    log.close()
    wait_for(lambda: {"alpha", "beta"} <= set(served_models(volume.ovms_config)), 60, what="the good frames")
    wait_for(lambda: not segment.exists(), 30, what="the segment deleted")
    expected = [*(f"{name}.json" for name in hostile), deep, *(f"{segment.name}@{o}.json" for o in offsets)]
    wait_for(lambda: set(expected) <= set(failed_records(volume)), 30, what="each hostile entry in failed/")
    failed = failed_records(volume)
    assert all(failed[name]["error"] for name in expected), failed
    assert not set(hostile) & {p.name for p in volume.intents.iterdir()}, "hostile entries removed"
    assert outside.read_bytes() == b"secret" and "secret" not in json.dumps(failed)
    assert agent.alive(), agent.log


def test_a_refused_frame_failed_cannot_take_keeps_its_segment_until_it_is_recorded(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    """failed/ is blocked (a file in its place): the refused frame is retried each step, as an
    intent file is, and its segment stays until the record is written."""
    agent = quiet_agent(volume, start_agent)
    failed_dir = volume.models / ".modelsync" / "failed"
    shutil.rmtree(failed_dir, ignore_errors=True)
    failed_dir.write_text("in the way")
    log = IntentLog(volume.intents)
    log.append(frame({"intent_version": 1, "id": "not-an-intent"}))
    assert log.path is not None
    segment = log.path
    log.append(frame(object_intent(bucket, "alpha", b"alpha")))
    log.close()
    wait_for(lambda: "alpha" in served_models(volume.ovms_config), 60, what="the good frame")
    wait_for(lambda: "cannot be recorded" in agent.log, 30, what="the record attempted")
    assert segment.exists(), "deleted before its refused frame was recorded"
    failed_dir.unlink()
    wait_for(lambda: f"{segment.name}@0.json" in failed_records(volume), 30, what="the frame recorded")
    wait_for(lambda: not segment.exists(), 30, what="the segment deleted")


def test_a_planted_frame_reusing_an_intents_id_does_not_displace_it(volume: Volume, start_agent) -> None:
    """An id is read twice (a segment planted by someone who read the webhook's): the planted
    copy is refused on its own and the webhook's intent is still handled, not dropped as seen.
    A resync, as nothing but its intent writes its result."""
    volume.intents.mkdir(parents=True, exist_ok=True)
    real = IntentWriter(volume.intents).new("resync")
    planted = IntentLog(volume.intents)  # an older name: read first
    planted.append(frame(hostile_intent("elsewhere", id=real["id"])))  # valid, refused when read
    planted.close()
    log = IntentLog(volume.intents)
    log.append(frame(real))
    log.close()
    quiet_agent(volume, start_agent)
    result = volume.models / ".modelsync" / "results" / f"{real['id']}.json"
    wait_for(result.exists, 60, what="the webhook's resync handled")
    wait_for(lambda: not list(volume.intents.iterdir()), 30, what="both segments deleted")
    assert f"{real['id']}.json" in failed_records(volume)
