"""Group commit: concurrent requests share one frame of the intent log (a version-2 batch) and
one synchronous write; each is answered only once its own intents are durable; the agent reads
batches along with version-1 files.

Real gunicorn and agent processes, moto's S3 server, a real file system. The SIGKILL test in
test_reliability_webhook.py checks every acknowledged intent against the disk, batches included.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from modelsync import atomic, intents
from modelsync.errors import ConfigError
from modelsync.intentbatch import BATCH_SUFFIX, BATCH_VERSION, GroupCommit, batch_document
from modelsync.intentlog import SEGMENT_SUFFIX, IntentLog, read_frames
from tests.support.helpers import md5, minio_event, served_models, wait_for
from tests.support.intents import documents_on_disk, failed_records, hostile_intent, intents_on_disk
from tests.support.metrics import metric
from tests.support.s3 import Bucket
from tests.support.volume import TOKEN, Volume


def _post_until(url: str, bucket: str, stop: threading.Event, acked: list[str], lock: threading.Lock) -> None:
    session = requests.Session()
    n = 0
    while not stop.is_set():
        n += 1
        key = f"m{threading.get_ident() % 1000}/1/file-{n}.bin"
        body = minio_event(bucket, key, etag=f"{n:032x}", size=n)
        response = session.post(
            f"{url}/minio/events", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
        assert response.status_code == 200, response.text
        with lock:
            acked.extend(response.json()["intents"])


def test_concurrent_requests_share_a_batch_commit_and_every_acknowledged_intent_is_in_one(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook()
    stop, lock, acked = threading.Event(), threading.Lock(), []
    clients = [
        threading.Thread(target=_post_until, args=(webhook.url, bucket.name, stop, acked, lock))
        for _ in range(16)
    ]
    for client in clients:
        client.start()
    try:
        wait_for(
            lambda: any(d["intent_version"] == BATCH_VERSION for d in documents_on_disk(volume.intents)),
            60,
            what="a batch commit",
        )
        wait_for(lambda: len(acked) >= 200, 60, what="200 acknowledged events")
    finally:
        stop.set()
        for client in clients:
            client.join(timeout=60)
    on_disk = intents_on_disk(volume.intents)
    assert len(acked) == len(set(acked))
    assert not [i for i in acked if i not in on_disk], "an acknowledged intent is not on disk"
    documents = documents_on_disk(volume.intents)
    batches = [d for d in documents if d["intent_version"] == BATCH_VERSION]
    assert batches and all(len(batch["intents"]) > 1 for batch in batches)
    assert len(documents) < len(on_disk), "fewer commits than intents"
    assert not list(volume.intents.glob("*.json")), "every commit went to the log"
    assert len(list(volume.intents.glob(f"*{SEGMENT_SUFFIX}"))) <= 2, "one segment per worker"
    accepted = metric(f"{webhook.url}/metrics", "modelsync_webhook_records_accepted_total")
    assert accepted == len(on_disk) == len(acked)


def test_one_request_alone_is_a_version_1_intent_in_the_log(
    volume: Volume, bucket: Bucket, start_webhook
) -> None:
    webhook = start_webhook()
    response = webhook.post_event(minio_event(bucket.name, "m/1/model.bin", etag="a" * 32, size=3))
    assert response.status_code == 200
    [intent_id] = response.json()["intents"]
    [document] = documents_on_disk(volume.intents)
    assert document["intent_version"] == 1 and document["id"] == intent_id
    assert not list(volume.intents.glob("*.json"))


def test_a_failed_commit_fails_every_request_of_its_group_and_no_other(tmp_path: Path) -> None:
    """Callers queued behind a running commit form the next group; that group's error
    (here: the state directory check, made before anything goes to a new place) reaches each
    of them, and the following group is fine. The segment holds one intent's frame, so the
    first commit opens it and the group of three goes to files: both check first."""
    release, entered = threading.Event(), threading.Event()
    calls: list[int] = []

    def check() -> None:
        calls.append(len(calls))
        if len(calls) == 1:  # the first commit holds the others back until they are queued
            entered.set()
            release.wait(30)
        elif len(calls) == 2:
            raise ConfigError("sync-config.yaml", "sync.models_path", "is a symbolic link")

    group = GroupCommit(tmp_path, check, IntentLog(tmp_path, segment_bytes=1024))
    writer = intents.IntentWriter(tmp_path)

    def one(key: str) -> Any:
        fields: Any = {"action": "put", "event_name": "s3:ObjectCreated:Put", "bucket": "b", "key": key}
        intent = writer.new("object", **fields, model="m", version=1, path=key.split("/")[-1])
        try:
            group.commit([intent])
        except ConfigError as exc:
            return exc
        return intent["id"]

    results: list[Any] = [None] * 4
    first = threading.Thread(target=lambda: results.__setitem__(0, one("m/1/a")))
    first.start()
    assert entered.wait(30)
    followers = [
        threading.Thread(target=lambda i=i: results.__setitem__(i, one(f"m/1/f{i}"))) for i in (1, 2, 3)
    ]
    for thread in followers:
        thread.start()
    wait_for(lambda: len(group._queue) == 3, 30, what="three requests queued behind the commit")
    release.set()
    for thread in [first, *followers]:
        thread.join(30)
    assert isinstance(results[0], str)
    assert all(isinstance(r, ConfigError) for r in results[1:]), results
    assert group.commits == 2 and len(calls) == 2
    assert list(intents_on_disk(tmp_path)) == [results[0]], "nothing of the failed group"
    after = one("m/1/after")
    assert list(intents_on_disk(tmp_path)) == [results[0], after]


def _object_intent(bucket: Bucket, model: str, data: bytes) -> dict[str, Any]:
    key = f"{model}/1/model.bin"
    bucket.put(key, data)
    return hostile_intent(bucket.name, key=key, model=model, path="model.bin", etag=md5(data), size=len(data))


def test_the_agent_applies_a_batch_file_and_deletes_it_once_every_intent_is_done(
    volume: Volume, bucket: Bucket, start_agent
) -> None:
    volume.settings["sync"]["interval"] = 600  # only the intents can bring the models
    volume.write()
    start_agent()
    alpha, beta = _object_intent(bucket, "alpha", b"alpha"), _object_intent(bucket, "beta", b"beta")
    stranger = hostile_intent("another-bucket", key="gamma/1/model.bin", model="gamma")
    batch = batch_document([alpha, beta, stranger])  # type: ignore[list-item]
    name = f"{batch['id']}{BATCH_SUFFIX}"
    atomic.write_json(volume.intents / name, batch)

    wait_for(lambda: {"alpha", "beta"} <= set(served_models(volume.ovms_config)), 60, what="both served")
    assert (volume.models / "beta" / "1" / "model.bin").read_bytes() == b"beta"
    wait_for(lambda: not (volume.intents / name).exists(), 30, what="the batch file deleted")
    failed = failed_records(volume)
    assert list(failed) == [f"{stranger['id']}.json"], failed
    assert "another-bucket" in failed[f"{stranger['id']}.json"]["error"]
    assert json.loads(failed[f"{stranger['id']}.json"]["content"]) == stranger


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda b: b["intents"][1].update(version="1"), id="a member fails the intent schema"),
        pytest.param(lambda b: b.update(intent_version=3), id="an unknown version"),
        pytest.param(lambda b: b["intents"].append(dict(b["intents"][0])), id="an id twice"),
    ],
)
def test_a_batch_file_that_cannot_be_read_moves_to_failed_whole(
    volume: Volume, bucket: Bucket, start_agent, spoil: Any
) -> None:
    volume.settings["sync"]["interval"] = 600
    volume.write()
    start_agent()
    batch: Any = batch_document([_object_intent(bucket, "alpha", b"a"), _object_intent(bucket, "beta", b"b")])
    spoil(batch)
    name = f"{batch['id']}{BATCH_SUFFIX}"
    atomic.write_json(volume.intents / name, batch)

    def moved() -> bool:  # the agent records the failure, then removes the file: wait for both
        return name in failed_records(volume) and not (volume.intents / name).exists()

    wait_for(moved, 30, what="the batch moved to failed/")
    error = failed_records(volume)[name]["error"]
    assert "invalid intent batch" in error or "intents[" in error, error
    assert "alpha" not in served_models(volume.ovms_config)


def test_a_resync_is_a_file_of_its_own_and_objects_go_to_the_log(tmp_path: Path) -> None:
    """A frame outlives its intent until the worker ends (an agent restart reads it again); a
    resync, a full reconcile, must not run twice, so it is a file the agent deletes once done."""
    writer = intents.IntentWriter(tmp_path)
    group = GroupCommit(tmp_path)
    fields: Any = {"action": "put", "event_name": "s3:ObjectCreated:Put", "bucket": "b", "key": "m/1/a"}
    thing = writer.new("object", **fields, model="m", version=1, path="a")
    resync = writer.new("resync", model="m")
    group.commit([thing, resync])
    assert [p.name for p in tmp_path.glob("*.json")] == [f"{resync['id']}.json"]
    [segment] = tmp_path.glob(f"*{SEGMENT_SUFFIX}")
    assert [json.loads(f.payload)["id"] for f in read_frames(segment, 0).frames] == [thing["id"]]
