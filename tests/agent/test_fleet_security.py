"""Fleet mode on a secured Kafka: the agent's event reader and its resync command take
``events.kafka.security`` (mutual TLS through the TLS front of tests/support/kafkasecure.py), and a
SASL refusal is named with the brokers, without the password."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.broker import Broker
from tests.support.fleet import Replica, make_replica
from tests.support.helpers import minio_event, wait_for
from tests.support.kafkasecure import Pki, TlsBroker
from tests.support.processes import Process, child_env
from tests.support.s3 import Bucket, S3Server

CONVERGE = 40.0
PASSWORD = "fleet-pa55-never-shown"


@pytest.fixture
def replica(
    tmp_path: Path, s3_server: S3Server, bucket: Bucket, tls_broker: TlsBroker, pki: Pki
) -> Iterator[Replica]:
    topic = f"minio-events-{uuid.uuid4().hex[:8]}"
    tls_broker.broker.create_topics(topic, partitions=3)
    made = make_replica(
        tmp_path / "replica", s3_server.endpoint, bucket.name, tls_broker.broker.bootstrap, topic
    )
    made.volume.settings["events"]["kafka"]["security"] = pki.security()
    made.volume.write()
    yield made
    if made.proc is not None and made.proc.alive():
        assert made.proc.stop(timeout=30) == 0, made.proc.log


def test_reader_follows_the_topic_over_mutual_tls(
    replica: Replica, bucket: Bucket, tls_broker: TlsBroker
) -> None:
    """Replica.start waits for the reader to hold its partitions: through the mutual-TLS front,
    so the CA, the client certificate and its key reached the reader's consumer. The upload
    after that reaches the replica by the topic alone (sync.interval is an hour)."""
    replica.start()
    topic = replica.volume.settings["events"]["kafka"]["topic"]
    data = b"weights over tls"
    etag = bucket.put("m/1/model.onnx", data)
    body = minio_event(bucket.name, "m/1/model.onnx", etag=etag, size=len(data))
    tls_broker.broker.send(topic, json.dumps(body).encode(), {}, key=f"{bucket.name}/m/1/model.onnx".encode())
    wait_for(lambda: replica.serves("m", 1, data), CONVERGE, what="m:1 served from the TLS topic")
    # status.json is rewritten every heartbeat: the count follows within one.
    wait_for(lambda: replica.event_source()["messages"]["applied"] == 1, 10, what="1 message applied")


def test_resync_command_is_published_over_mutual_tls(replica: Replica) -> None:
    replica.start()
    done = subprocess.run(
        [sys.executable, "-m", "agent", "resync", "--wait", "30"],
        env=child_env(replica.volume),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["status"] == "applied"


def test_reader_names_the_brokers_when_sasl_is_refused(
    tmp_path: Path, s3_server: S3Server, bucket: Bucket, sasl_broker: Broker
) -> None:
    made = make_replica(
        tmp_path / "replica", s3_server.endpoint, bucket.name, sasl_broker.bootstrap, "events"
    )
    security = {"protocol": "sasl_plaintext", "sasl": {"mechanism": "SCRAM-SHA-256", "username": "agent"}}
    made.volume.settings["events"]["kafka"]["security"] = security
    made.volume.write()
    env = child_env(made.volume, MODELSYNC_EVENTS_KAFKA_PASSWORD=PASSWORD)
    proc = Process([sys.executable, "-m", "agent", "run"], env, made.volume.root / "agent.log")
    expected = f"event reader: cannot use Kafka at {sasl_broker.bootstrap} (protocol sasl_plaintext)"
    try:
        wait_for(lambda: expected in proc.log or not proc.alive(), CONVERGE, what="the reader's error")
        assert "authentication failed: check security.sasl" in proc.log, proc.log
        wait_for(
            lambda: expected in ((made.event_source().get("last_error") or {}).get("message") or ""),
            CONVERGE,
            what="status.json says why",
        )
        assert made.event_source()["connected"] is False
        assert made.volume.ovms_config.exists(), "the agent serves without its topic"
        assert PASSWORD not in proc.log
    finally:
        assert proc.stop(timeout=30) == 0, proc.log
