"""Fleet mode (issue 13) against real processes: several agents, each with its own volume,
reading one Tansu topic that plays MinIO's Kafka target; moto holds the bucket.

Every replica runs with ``sync.interval: 3600``: after its start-up reconcile, only the topic
can explain what a replica learns during a test.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from devstack.broker import Broker
from tests.support.fleet import FleetBroker, MinioKafkaTarget, Proxy, Replica, make_replica
from tests.support.helpers import free_port, minio_event, wait_for
from tests.support.intents import intent_files
from tests.support.processes import child_env, launch_webhook
from tests.support.s3 import Bucket, S3Server
from tests.support.volume import TOKEN

Fleet = Callable[..., tuple[list[Replica], MinioKafkaTarget]]
CONVERGE = 40.0  # seconds: generous for a loaded 2-core machine, far below sync.interval


@pytest.fixture(scope="module")
def fleet_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetBroker]:
    logs = tmp_path_factory.mktemp("fleet-broker")
    proxy_port = free_port()
    broker = Broker(logs / "tansu.log", free_port(), advertised_port=proxy_port)
    broker.start()
    proxy = Proxy(logs / "proxy.log", proxy_port, broker.port)
    proxy.start()
    yield FleetBroker(broker, proxy)
    proxy.stop()
    broker.stop()


@pytest.fixture
def fleet(tmp_path: Path, s3_server: S3Server, bucket: Bucket, fleet_broker: FleetBroker) -> Iterator[Fleet]:
    """``fleet(n)``: n replicas started on a fresh topic, and MinIO's Kafka target for it."""
    topic = fleet_broker.new_topic()
    target = MinioKafkaTarget(fleet_broker.bootstrap, topic, bucket)
    replicas: list[Replica] = []

    def add(count: int = 1, **sections: dict[str, object]) -> list[Replica]:
        added = []
        for _ in range(count):
            root = tmp_path / f"replica-{len(replicas)}"
            replica = make_replica(
                root, s3_server.endpoint, bucket.name, fleet_broker.bootstrap, topic, **sections
            )
            replicas.append(replica)
            added.append(replica)
        for replica in added:
            replica.start()
        return added

    def start(count: int, **sections: dict[str, object]) -> tuple[list[Replica], MinioKafkaTarget]:
        add(count, **sections)
        return replicas, target

    start.add = add  # type: ignore[attr-defined]
    yield start
    for replica in replicas:
        if replica.proc is not None and replica.proc.alive():
            code = replica.proc.stop(timeout=30)
            assert code == 0, f"agent exited {code} on SIGTERM:\n{replica.proc.log}"


def all_serve(replicas: list[Replica], model: str, versions: dict[int, bytes]) -> bool:
    return all(r.serves(model, v, data) for r in replicas for v, data in versions.items())


def synced(log: str) -> list[int]:
    return [int(v) for v in re.findall(r"Successfully synced model m:(\d+)", log)]


def reconciled_at(replica: Replica) -> float:
    return float(replica.status()["last_reconcile"]["at"])


def test_every_replica_serves_every_version_and_every_delete(fleet: Fleet) -> None:
    replicas, minio = fleet(3)
    started = [reconciled_at(r) for r in replicas]
    versions = {v: f"weights {v}".encode() for v in (1, 2, 3)}
    for version, data in versions.items():
        minio.upload(f"m/{version}/model.onnx", data)
    wait_for(lambda: all_serve(replicas, "m", versions), CONVERGE, what="every replica serves m:1..3")

    minio.remove("m/1/model.onnx")
    wait_for(lambda: not any(r.has_version("m", 1) for r in replicas), CONVERGE, what="m:1 gone everywhere")
    assert all_serve(replicas, "m", {2: versions[2], 3: versions[3]})
    # No timed reconcile ran: the topic did it. (Which partitions the 4 messages land on is the
    # key hash's choice, and the bucket's name is random: a spread is likely, never certain.)
    assert [reconciled_at(r) for r in replicas] == started
    for replica in replicas:  # status.json is rewritten every heartbeat
        wait_for(lambda r=replica: r.event_source()["messages"]["applied"] == 4, 10, what="applied: 4")
        wait_for(lambda r=replica: sum(r.position().values()) == 4, 10, what="a position past all 4")


def test_replica_killed_during_a_burst_resumes_and_downloads_only_what_it_lacks(fleet: Fleet) -> None:
    (steady, victim), minio = fleet(2)
    versions = {v: f"burst {v}".encode() for v in range(1, 13)}
    for version in range(1, 5):
        minio.upload(f"m/{version}/model.onnx", versions[version])
    wait_for(lambda: victim.serves("m", 1, versions[1]), CONVERGE, what="victim serves m:1")
    assert victim.proc is not None
    victim.proc.kill()  # SIGKILL, mid-burst
    first_run = victim.proc.log
    had = {
        int(v) for v in json.loads((victim.models / ".modelsync" / "state.json").read_text())["models"]["m"]
    }
    # Renamed into place but not yet in the state when the kill came: adopted, not downloaded.
    on_disk = {v for v, data in versions.items() if victim.serves("m", v, data)}
    stored = victim.position()
    for version in range(5, 13):  # published while the victim is down
        minio.upload(f"m/{version}/model.onnx", versions[version])

    victim.start()
    wait_for(lambda: all_serve([steady, victim], "m", versions), CONVERGE, what="both serve m:1..12")

    lacked = set(versions) - had
    run = victim.proc

    def second_run() -> set[int]:  # logged once config.json names the whole batch
        return set(synced(run.log[len(first_run) :]))

    wait_for(lambda: second_run() >= lacked, 10, what=f"synced {sorted(lacked)} in the second run")
    assert not had & second_run(), f"re-downloaded what it had: {had & second_run()}"
    wait_for(
        lambda: victim.status()["counters"]["downloaded_files"] == len(lacked - on_disk), 10, what="counters"
    )
    # It resumed at its stored position and read every message produced since, and no more.
    since = sum(minio.end_offsets().values()) - sum(stored.values())  # 8, or more if killed mid-read
    assert since >= 8

    def read() -> int:  # the start-up reconcile may have served them first: wait for the topic
        return sum(victim.event_source()["messages"].values())

    wait_for(lambda: read() >= since and victim.position() == minio.end_offsets(), CONVERGE, what="read")
    assert read() == since, (read(), since, stored)


def agent_cli(replica: Replica, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agent", *args],
        env=child_env(replica.volume),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_broker_outage_keeps_serving_then_converges_from_the_topic(
    fleet: Fleet, fleet_broker: FleetBroker
) -> None:
    replicas, minio = fleet(2)
    started = [reconciled_at(r) for r in replicas]
    versions = {v: f"outage {v}".encode() for v in (1, 2, 3)}
    minio.upload("m/1/model.onnx", versions[1])
    wait_for(lambda: all_serve(replicas, "m", {1: versions[1]}), CONVERGE, what="m:1 everywhere")

    minio.holding = True  # MinIO's queue_dir keeps the events it cannot deliver
    fleet_broker.proxy.stop()
    try:
        wait_for(
            lambda: all(r.event_source().get("connected") is False for r in replicas),
            CONVERGE,
            what="every replica reports the broker down",
        )
        # Long enough for each reader to give up its session (and start a new one, with backoff).
        wait_for(
            lambda: all(r.event_source()["reconnects"] for r in replicas), CONVERGE, what="sessions lost"
        )
        health = agent_cli(replicas[0], "health")
        assert health.returncode == 0, health.stderr
        assert health.stdout.splitlines()[-1] == "degraded"  # the verdict is the last line
        assert "event topic" in health.stderr and "unreachable" in health.stderr
        assert "DISCONNECTED" in agent_cli(replicas[0], "status").stdout
        minio.upload("m/2/model.onnx", versions[2])
        minio.upload("m/3/model.onnx", versions[3])
        assert len(minio.queued) == 2
        # No replica stops serving what it has.
        assert all(r.proc is not None and r.proc.alive() for r in replicas)
        assert all_serve(replicas, "m", {1: versions[1]})
    finally:
        fleet_broker.proxy.start()
    minio.holding = False
    minio.drain()
    wait_for(lambda: all_serve(replicas, "m", versions), CONVERGE, what="every replica catches up")
    wait_for(lambda: all(r.event_source()["connected"] for r in replicas), CONVERGE, what="reconnected")
    assert [reconciled_at(r) for r in replicas] == started, "a reconcile ran: the topic must explain it"
    assert all_serve(replicas, "m", versions)


def test_poison_messages_are_counted_and_skipped(fleet: Fleet, bucket: Bucket) -> None:
    limit = 64 * 1024  # the webhook's body limit bounds a message's value too
    port = free_port()
    (replica,), minio = fleet(1, webhook={"max_body_bytes": limit}, sync={"metrics_port": port})
    huge = minio_event(bucket.name, "m/9/model.onnx")
    huge["padding"] = "P" * limit  # otherwise a valid event: over the size limit only
    unsafe = minio_event(bucket.name, "m/1/../../outside.onnx")
    minio.upload("m/1/model.onnx", b"good 1")
    for value in (b"not json {", json.dumps({"Records": "nope"}).encode(), json.dumps(unsafe).encode()):
        minio.send_raw(b"junk", value)
    minio.send_raw(f"{bucket.name}/m/9/model.onnx".encode(), json.dumps(huge).encode())
    minio.notify("x/1/f", minio_event("another-bucket", "x/1/f"))  # not ours: ignored, not poison
    minio.upload("m/2/model.onnx", b"good 2")

    wait_for(lambda: all_serve([replica], "m", {1: b"good 1", 2: b"good 2"}), CONVERGE, what="good ones")
    wait_for(lambda: replica.position() == minio.end_offsets(), CONVERGE, what="position at the end")
    assert replica.event_source()["messages"] == {"applied": 2, "ignored": 1, "resync": 0, "poison": 4}
    log = replica.proc.log if replica.proc else ""
    assert log.count("skipped message") == 4
    assert "P" * 200 not in log, "a poison message's body was logged"
    assert not replica.has_version("m", 9) and not (replica.models.parent / "outside.onnx").exists()
    assert replica.proc is not None and replica.proc.alive()
    metrics = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in (
        'modelsync_agent_event_messages_total{outcome="poison"} 4.0',
        'modelsync_agent_event_messages_total{outcome="applied"} 2.0',
        'modelsync_agent_event_messages_total{outcome="ignored"} 1.0',
        "modelsync_agent_event_source_connected 1.0",
    ):
        assert line in metrics, line
    assert re.search(r'^modelsync_agent_event_source_lag\{partition="0"\} 0\.0$', metrics, re.M)


def test_a_position_the_topic_no_longer_holds_restarts_from_its_earliest_offset(fleet: Fleet) -> None:
    (replica,), minio = fleet(1)
    minio.upload("m/1/model.onnx", b"before")
    wait_for(lambda: replica.serves("m", 1, b"before"), CONVERGE, what="m:1")
    assert replica.proc is not None and replica.proc.stop(timeout=30) == 0
    # As after the topic was deleted and created again: offsets beyond what it holds.
    position = replica.models / ".modelsync" / "kafka-position.json"
    position.write_text(json.dumps({"topic": minio.topic, "partitions": {"0": 999, "1": 999, "2": 999}}))
    minio.upload("m/2/model.onnx", b"after")

    replica.start()
    wait_for(lambda: replica.serves("m", 2, b"after"), CONVERGE, what="m:2")
    assert replica.proc.log.count("no longer holds offset 999") == 3
    wait_for(lambda: replica.position() == minio.end_offsets(), CONVERGE, what="position at the end again")
    wait_for(lambda: sum(replica.event_source()["messages"].values()) == 2, 10, what="both messages re-read")


def test_new_replica_joining_late_converges_to_the_bucket(fleet: Fleet) -> None:
    replicas, minio = fleet(2)
    versions = {v: f"late {v}".encode() for v in (1, 2, 3)}
    minio.upload("m/1/model.onnx", versions[1])
    minio.upload("m/2/model.onnx", versions[2])
    wait_for(lambda: all_serve(replicas, "m", {1: versions[1], 2: versions[2]}), CONVERGE, what="m:1,2")

    (late,) = fleet.add()  # type: ignore[attr-defined]
    wait_for(lambda: all_serve([late], "m", {1: versions[1], 2: versions[2]}), CONVERGE, what="late replica")
    assert late.position() == minio.end_offsets(), "a new replica starts at the topic's end"
    minio.upload("m/3/model.onnx", versions[3])
    wait_for(lambda: all_serve(replicas, "m", versions), CONVERGE, what="m:3 everywhere, the late one too")
    # It read only what came after it joined: the rest came from its start-up reconcile.
    wait_for(lambda: late.position() == minio.end_offsets(), CONVERGE, what="late replica at the end")
    wait_for(lambda: sum(late.event_source()["messages"].values()) >= 1, 10, what="m:3's message counted")
    assert sum(late.event_source()["messages"].values()) == 1


def test_resync_in_fleet_mode_reaches_every_replica(fleet: Fleet, bucket: Bucket) -> None:
    replicas, _ = fleet(3)
    webhook = launch_webhook(replicas[0].volume, replicas[0].volume.root / "webhook.log")
    try:
        # Events MinIO lost (no queue_dir): only a resync can bring these versions.
        bucket.put("m/1/model.onnx", b"lost 1")
        response = requests.post(
            f"{webhook.url}/v1/resync?wait=30", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=40
        )
        assert response.status_code == 200, response.text
        outcome = response.json()
        assert outcome["status"] == "applied" and outcome["versions"] == {"m:1": "published"}
        wait_for(lambda: all_serve(replicas, "m", {1: b"lost 1"}), CONVERGE, what="m:1 everywhere")
        for replica in replicas:  # every replica resynced under the same id
            result = replica.models / ".modelsync" / "results" / f"{outcome['id']}.json"
            wait_for(result.exists, CONVERGE, what=f"resync result in {replica.models}")
            assert json.loads(result.read_text())["status"] == "applied"
            line = f"last resync {outcome['id']}: applied"
            wait_for(lambda r=replica, x=line: x in agent_cli(r, "status").stdout, 10, what=line)
    finally:
        webhook.proc.stop()

    bucket.put("m/2/model.onnx", b"lost 2")
    done = agent_cli(replicas[1], "resync", "--model", "m", "--wait", "30")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["versions"] == {"m:1": "in_sync", "m:2": "published"}
    wait_for(lambda: all_serve(replicas, "m", {2: b"lost 2"}), CONVERGE, what="m:2 everywhere")
    wait_for(
        lambda: all(r.event_source()["messages"]["resync"] == 2 for r in replicas), 10, what="2 resyncs read"
    )


def test_resync_fails_clearly_when_the_broker_is_away(fleet: Fleet, fleet_broker: FleetBroker) -> None:
    (replica,), _ = fleet(1)
    webhook = launch_webhook(replica.volume, replica.volume.root / "webhook.log")
    fleet_broker.proxy.stop()
    try:
        done = agent_cli(replica, "resync", "--wait", "1")
        answer = requests.post(
            f"{webhook.url}/v1/resync?wait=1", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )
    finally:
        fleet_broker.proxy.start()
        webhook.proc.stop()
    assert done.returncode == 1
    assert "cannot publish resync" in done.stderr and "nothing was requested" in done.stderr
    assert answer.status_code == 503, answer.text
    assert "cannot publish resync" in answer.json()["error"]
    assert not intent_files(replica.models / ".modelsync" / "intents")
