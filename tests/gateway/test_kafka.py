"""The Kafka provider against a real broker (Tansu) and a real KServe v2 server."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from devstack.broker import Broker
from devstack.modelserver import ModelServer
from modelsync import schema
from tests.support.gateway import infer_body, read_jsonl
from tests.support.helpers import free_port, wait_for
from tests.support.kafka import replies, reply, send_request, use_kafka
from tests.support.processes import Process
from tests.support.volume import Volume


def test_round_trip_with_correlation_ids(
    gateway_volume: Volume, broker: Broker, topics: dict[str, str], start_kafka_worker: Callable[..., Process]
) -> None:
    use_kafka(gateway_volume, broker, topics)
    for index in range(10):
        version = "1" if index % 2 else "2"
        send_request(
            broker, topics["requests"], f"corr-{index}", "adder", infer_body(), **{"model-version": version}
        )
    start_kafka_worker()

    answers = {r.correlation: r for r in replies(broker, topics["replies"], 10)}
    assert sorted(answers) == sorted(f"corr-{i}" for i in range(10))
    for index in range(10):
        answer = answers[f"corr-{index}"]
        version = "1" if index % 2 else "2"
        assert answer.headers["status"] == "200"
        assert answer.headers["model"] == "adder" and answer.headers["model-version"] == version
        assert answer.body["model_version"] == version
        assert answer.body["outputs"][0]["data"] == ([6.0, 15.0] if version == "1" else [12.0, 30.0])
    assert broker.read(topics["dead"], 1, timeout=1) == []

    path = gateway_volume.root / "predictions" / "predictions.jsonl"
    records = wait_for(lambda: len(read_jsonl(path)) >= 15 and read_jsonl(path), 10, what="15 records")
    for record in records:
        schema.check(schema.PREDICTION, record)
    assert {r["provider"] for r in records} == {"kafka"}
    assert {r["requestId"] for r in records} == set(answers)


def test_permanent_failures_are_dead_lettered_with_the_reason(
    gateway_volume: Volume, broker: Broker, topics: dict[str, str], start_kafka_worker: Callable[..., Process]
) -> None:
    use_kafka(gateway_volume, broker, topics)
    bad = {
        "not-json": ("adder", b"{nope", "not JSON"),
        "no-model": (None, infer_body(), "no model"),
        "unknown-model": ("nope", infer_body(), "404"),
        "model-fails": ("failing", infer_body(), "500"),
        "bad-input": (
            "adder",
            {"inputs": [{"name": "x", "datatype": "FP32", "shape": [6], "data": [1] * 6}]},
            "400",
        ),
    }
    for correlation, (model, body, _) in bad.items():
        send_request(broker, topics["requests"], correlation, model, body)
    send_request(broker, topics["requests"], "fine", "adder", infer_body())
    start_kafka_worker()

    dead = {reply(m).correlation: m for m in broker.read(topics["dead"], len(bad))}
    assert sorted(dead) == sorted(bad)
    for correlation, (_, body, reason) in bad.items():
        message = dead[correlation]
        headers = reply(message).headers
        assert reason in headers["dead-letter-reason"], headers
        assert message.value() == (body if isinstance(body, bytes) else json.dumps(body).encode())
        assert headers["original-topic"] == topics["requests"]
    # Every request is answered, the failed ones with an error object.
    answers = {r.correlation: r for r in replies(broker, topics["replies"], len(bad) + 1)}
    assert sorted(answers) == sorted([*bad, "fine"])
    assert answers["fine"].headers["status"] == "200"
    for correlation in bad:
        assert answers[correlation].headers["status"] != "200"
        assert answers[correlation].body["error"]


def test_requests_wait_while_the_model_server_is_down_and_are_answered_when_it_is_back(
    gateway_volume: Volume,
    broker: Broker,
    topics: dict[str, str],
    start_kafka_worker: Callable[..., Process],
    tmp_path: Path,
) -> None:
    port = free_port()
    gateway_volume.settings["gateway"]["model_service"]["url"] = f"http://127.0.0.1:{port}"
    use_kafka(gateway_volume, broker, topics, max_attempts=2)
    send_request(broker, topics["requests"], "while-down", "adder", infer_body(), **{"model-version": "1"})
    worker = start_kafka_worker()
    wait_for(lambda: worker.log.count("reading the batch again") >= 2, 30, what="the batch waiting")
    assert broker.read(topics["dead"], 1, timeout=1) == [], "an outage is not a reason to dead-letter"

    with ModelServer(tmp_path / "late-mlserver.log", port=port):
        (answer,) = replies(broker, topics["replies"], 1)
    assert answer.correlation == "while-down" and answer.headers["status"] == "200"
    assert answer.headers["possible-duplicate"] == "true"


def test_a_request_the_model_server_did_not_answer_in_time_is_not_sent_again(
    gateway_volume: Volume, broker: Broker, topics: dict[str, str], start_kafka_worker: Callable[..., Process]
) -> None:
    gateway_volume.settings["gateway"]["model_service"]["timeout_seconds"] = 0.5
    use_kafka(gateway_volume, broker, topics)
    send_request(broker, topics["requests"], "too-slow", "slow", infer_body(parameters={"sleep_ms": 2000}))
    worker = start_kafka_worker()

    (dead,) = broker.read(topics["dead"], 1)
    assert "did not answer in time" in reply(dead).headers["dead-letter-reason"]
    (answer,) = replies(broker, topics["replies"], 1)
    assert answer.headers["status"] == "504"
    assert "retrying" not in worker.log, "a request that was sent is never sent again"


def test_at_least_once_when_the_worker_is_killed(
    gateway_volume: Volume, broker: Broker, topics: dict[str, str], start_kafka_worker: Callable[..., Process]
) -> None:
    use_kafka(gateway_volume, broker, topics, batch_size=10, concurrency=2)
    total = 120
    body = infer_body(parameters={"sleep_ms": 15})
    producer = broker.producer()
    for index in range(total):
        headers = [("correlation-id", f"c{index}".encode()), ("model", b"slow")]
        producer.produce(topics["requests"], value=json.dumps(body).encode(), headers=headers)
    assert producer.flush(10) == 0

    first = start_kafka_worker()
    wait_for(lambda: len(broker.read(topics["replies"], 30, timeout=0.5)) >= 30, 30, what="30 replies")
    first.kill()  # SIGKILL: mid-batch, nothing drained, nothing committed for that batch
    start_kafka_worker()

    got = replies(broker, topics["replies"], total, timeout=60)
    counts = Counter(r.correlation for r in got)
    assert set(counts) == {f"c{i}" for i in range(total)}, "every request gets an answer"
    assert all(r.headers["status"] == "200" for r in got)
    for correlation, seen in counts.items():
        if seen > 1:  # a repeat is allowed, and must say it may be one
            marks = [r.headers.get("possible-duplicate") for r in got if r.correlation == correlation]
            assert "true" in marks, (correlation, marks)


def test_a_stalled_worker_loses_its_batch_and_the_repeat_is_marked(
    gateway_volume: Volume, broker: Broker, topics: dict[str, str], start_kafka_worker: Callable[..., Process]
) -> None:
    """A model call slower than max_poll_interval_ms: the group moves the partition on, the
    next owner answers the batch again, and its answers say they may be repeats."""
    use_kafka(gateway_volume, broker, topics, batch_size=5, max_poll_interval_ms=4000)
    stalled = infer_body(parameters={"sleep_ms": 6000})
    send_request(broker, topics["requests"], "slow-0", "slow", stalled)
    worker = start_kafka_worker()

    got = replies(broker, topics["replies"], 2, timeout=40)
    assert [r.correlation for r in got] == ["slow-0", "slow-0"], [r.headers for r in got]
    assert [r.headers.get("possible-duplicate") for r in got].count("true") >= 1
    assert "commit failed" in worker.log


def test_a_correlation_id_that_could_inject_headers_is_replaced(
    gateway_volume: Volume, broker: Broker, topics: dict[str, str], start_kafka_worker: Callable[..., Process]
) -> None:
    use_kafka(gateway_volume, broker, topics)
    for hostile in ("a\r\nX-Evil: 1", "caf\u00e9-\u20ac", "x" * 300):
        send_request(broker, topics["requests"], hostile, "adder", infer_body(), **{"model-version": "1"})
    start_kafka_worker()

    answers = replies(broker, topics["replies"], 3)
    assert [a.headers["status"] for a in answers] == ["200", "200", "200"]
    assert [a.correlation for a in answers] == [f"{topics['requests']}-0-{i}" for i in range(3)]


def test_two_workers_share_the_partitions_and_answer_everything_once(
    gateway_volume: Volume, broker: Broker, start_kafka_worker: Callable[..., Process]
) -> None:
    names = {k: f"{k}-two-{free_port()}" for k in ("requests", "replies", "dead", "predictions")}
    broker.create_topics(names["requests"], partitions=2)
    broker.create_topics(names["replies"], names["dead"], names["predictions"])
    use_kafka(gateway_volume, broker, names)
    first = start_kafka_worker()
    second = start_kafka_worker()
    wait_for(lambda: "assigned" in second.log and first.log.count("assigned") >= 2, 30, what="a rebalance")

    producer = broker.producer()
    for index in range(40):
        headers = [("correlation-id", f"c{index}"), ("model", "adder"), ("model-version", "1")]
        producer.produce(
            names["requests"], value=json.dumps(infer_body()).encode(), headers=headers, key=str(index)
        )
    assert producer.flush(10) == 0

    got = replies(broker, names["replies"], 40)
    assert sorted(r.correlation for r in got) == sorted(f"c{i}" for i in range(40))
    answered_by = {r.headers["request-partition"] for r in got}
    assert answered_by == {"0", "1"}, "both partitions were served"


def test_reply_to_is_honoured_only_for_listed_topics(
    gateway_volume: Volume, broker: Broker, topics: dict[str, str], start_kafka_worker: Callable[..., Process]
) -> None:
    other = f"other-replies-{free_port()}"
    broker.create_topics(other)
    use_kafka(gateway_volume, broker, topics, reply_to_topics=[other])
    send_request(broker, topics["requests"], "listed", "adder", infer_body(), **{"reply-to": other})
    send_request(
        broker, topics["requests"], "not-listed", "adder", infer_body(), **{"reply-to": topics["dead"]}
    )
    start_kafka_worker()

    (listed,) = replies(broker, other, 1)
    assert listed.correlation == "listed" and listed.headers["status"] == "200"
    (fallback,) = replies(broker, topics["replies"], 1)
    assert fallback.correlation == "not-listed", "an unlisted reply-to is answered on reply_topic"
    assert broker.read(topics["dead"], 1, timeout=1) == [], "the client could not write into the dead letters"
