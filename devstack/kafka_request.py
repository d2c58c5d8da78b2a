"""Send one KServe v2 inference request through the gateway's Kafka provider and print the
answer: ``python -m devstack.kafka_request --bootstrap HOST:PORT --model adder '{"inputs": ...}'``.

What any Kafka client does: produce to the request topic with ``model`` (and optionally
``model-version``) and a ``correlation-id`` header, then read the reply topic for that id.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.kafka_request", description=__doc__)
    parser.add_argument("body", help="the KServe v2 inference request, as JSON")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--model", required=True)
    parser.add_argument("--version")
    parser.add_argument("--request-topic", default="inference-requests")
    parser.add_argument("--reply-topic", default="inference-replies")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    correlation = uuid.uuid4().hex
    headers = {"model": args.model, "correlation-id": correlation}
    if args.version:
        headers["model-version"] = args.version
    producer = Producer({"bootstrap.servers": args.bootstrap, "enable.idempotence": False})
    producer.produce(args.request_topic, value=args.body.encode(), headers=list(headers.items()))
    if producer.flush(10):
        print(f"the broker at {args.bootstrap} did not take the request", file=sys.stderr)
        return 1

    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": f"cli-{correlation}"})
    consumer.assign([TopicPartition(args.reply_topic, 0, 0)])
    deadline = time.monotonic() + args.timeout
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(100, 0.2):
                found = dict(message.headers() or []) if message.error() is None else {}
                if found.get("correlation-id") == correlation.encode():
                    meta = {k: v.decode() for k, v in found.items() if isinstance(v, bytes)}
                    print(json.dumps({"headers": meta, "body": json.loads(message.value() or b"null")}))
                    return 0
    finally:
        consumer.close()
    print(f"no answer for correlation id {correlation} within {args.timeout:.0f}s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
