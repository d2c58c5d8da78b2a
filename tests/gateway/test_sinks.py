"""The Kafka, HTTP (CloudEvents) and bucket sinks, each against a real peer."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from devstack.broker import Broker
from gateway.encoding import encode
from gateway.errors import SinkError
from gateway.prediction import Call
from gateway.sinkreporter import SinkReporter
from gateway.sinks.bucket import BucketSink
from gateway.sinks.http import HttpSink
from gateway.sinks.kafka import KafkaSink
from gateway.spill import Spill
from modelsync import schema
from modelsync.config import MinioConfig
from modelsync.gatewayconfig import SinkConfig
from modelsync.secret import Secret
from tests.support.gateway import a_call
from tests.support.helpers import free_port, wait_for
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, Bucket, S3Server


class Collector:
    """An HTTP endpoint that keeps every CloudEvent posted to it (a stand-in for an event
    broker's ingress), and that can be started after the sink began sending."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: list[tuple[dict[str, str], dict[str, Any]]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events"

    def start(self) -> None:
        events = self.events

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                events.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.stop()


def sink_config(kind: str, **options: object) -> SinkConfig:
    return SinkConfig(kind, kind, MappingProxyType(options))


def reporter_for(sink: Any, tmp_path: Path) -> SinkReporter:
    spill = Spill(tmp_path / "spill")
    spill.prepare()
    return SinkReporter(sink, spill, queue_size=100, batch_size=20, flush_seconds=0.02, retry_seconds=0.05)


def test_http_sink_posts_cloudevents_and_replays_after_an_outage(
    tmp_path: Path, collector: Collector
) -> None:
    reporter = reporter_for(HttpSink(sink_config("http", url=collector.url, timeout_seconds=1)), tmp_path)
    for index in range(30):
        reporter.submit(a_call(index))
    wait_for(lambda: list((tmp_path / "spill").glob("*.jsonl")), 10, what="spilled records")

    collector.start()
    wait_for(lambda: len(collector.events) >= 30, 20, what="30 events")
    reporter.close()
    assert sorted(body["requestId"] for _, body in collector.events) == sorted(f"req-{i}" for i in range(30))
    for headers, body in collector.events:
        schema.check(schema.PREDICTION, body)
        assert headers["ce-specversion"] == "1.0"
        assert headers["ce-id"] == body["predictionId"]
        assert headers["ce-type"] == "io.modelsync.gateway.prediction"
        assert headers["ce-source"] and headers["ce-time"] == body["responseTimestamp"]
        assert headers["content-type"] == "application/json"


def test_kafka_sink_produces_one_message_per_record(broker: Broker, topics: dict[str, str]) -> None:
    sink = KafkaSink(sink_config("kafka", topic=topics["predictions"], bootstrap_servers=broker.bootstrap))
    lines = [line for index in range(25) for line in encode(a_call(index))]
    sink.send(lines)
    sink.close()

    messages = broker.read(topics["predictions"], 25)
    records = [json.loads(m.value() or b"") for m in messages]
    assert sorted(r["requestId"] for r in records) == sorted(f"req-{i}" for i in range(25))
    for record in records:
        schema.check(schema.PREDICTION, record)


def test_kafka_sink_reports_an_unreachable_broker() -> None:
    address = f"127.0.0.1:{free_port()}"
    sink = KafkaSink(sink_config("kafka", topic="t", bootstrap_servers=address, timeout_seconds=1))
    lines = encode(a_call(1))
    with pytest.raises(SinkError) as failure:
        sink.send(lines)
    assert failure.value.undelivered == lines


def test_bucket_sink_writes_batches_as_jsonl_objects(
    s3_server: S3Server, bucket: Bucket, tmp_path: Path
) -> None:
    minio = MinioConfig(
        endpoint=f"127.0.0.1:{s3_server.port}",
        secure=False,
        bucket=bucket.name,
        access_key=Secret(ACCESS_KEY),
        secret_key=Secret(SECRET_KEY),
    )
    sink = BucketSink(sink_config("bucket", bucket=bucket.name, prefix="training/"), minio)
    reporter = reporter_for(sink, tmp_path)
    for index in range(50):
        reporter.submit(a_call(index))

    def objects() -> list[str]:
        return [
            o.object_name for o in bucket.client.list_objects(bucket.name, prefix="training/", recursive=True)
        ]

    def records() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for name in objects():
            out += [json.loads(x) for x in bucket.client.get_object(bucket.name, name).read().splitlines()]
        return out

    wait_for(lambda: len(records()) == 50, 20, what="50 records in the bucket")
    reporter.close()
    assert sorted(r["requestId"] for r in records()) == sorted(f"req-{i}" for i in range(50))
    for name in objects():
        assert name.startswith("training/") and name.endswith(".jsonl")
    # The same batch sent twice lands on the same object: retries never duplicate records.
    lines = [line for index in range(3) for line in encode(a_call(index))]
    sink.send(lines)
    sink.send(lines)
    assert len(records()) == 53


def test_a_record_kafka_can_never_take_is_set_aside_and_the_rest_arrive(
    broker: Broker, topics: dict[str, str], tmp_path: Path
) -> None:
    """A prediction over the producer's message limit (1 MB) in the middle of a batch: the
    others arrive once, the big one is kept in rejected/, and replay is not blocked by it."""
    sink = KafkaSink(sink_config("kafka", topic=topics["predictions"], bootstrap_servers=broker.bootstrap))
    reporter = reporter_for(sink, tmp_path)
    big = a_call(1)
    huge = json.loads(big.response)
    huge["outputs"][0]["data"] = [0.5] * 300_000
    calls = [a_call(0), Call(**{**big.__dict__, "response": json.dumps(huge).encode()}), a_call(2)]
    for call in calls:
        reporter.submit(call)

    rejected = tmp_path / "spill" / "rejected"
    wait_for(lambda: list(rejected.glob("*.jsonl")), 20, what="the refused record set aside")
    messages = broker.read(topics["predictions"], 2)
    assert sorted(json.loads(m.value() or b"")["requestId"] for m in messages) == ["req-0", "req-2"]
    (kept,) = [json.loads(line) for f in rejected.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert kept["requestId"] == "req-1"
    reporter.close()
    assert len(broker.read(topics["predictions"], 3, timeout=2)) == 2, "nothing sent twice"
