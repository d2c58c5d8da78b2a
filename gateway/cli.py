"""``python -m gateway kafka``: the Kafka provider as a worker process (thin, as uvicorn's)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from gateway.errors import SpillError
from gateway.factory import build_predictor
from modelsync import logsetup
from modelsync.config import load_config
from modelsync.errors import ConfigError

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument(
        "--config", help="configuration file (default: $CONFIG_PATH or /config/sync-config.yaml)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("kafka", help="consume inference requests from Kafka and answer on the reply topic")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logsetup.configure(settings.sync.log_level, settings.sync.log_format)
    kafka = settings.gateway.kafka
    if not kafka.enabled:
        print(f"configuration error: {settings.source}: gateway.kafka.enabled is false", file=sys.stderr)
        return 2
    try:
        predictor = build_predictor(settings)
    except SpillError as exc:
        print(f"configuration error: {settings.source}: gateway.reporting.spill_dir: {exc}", file=sys.stderr)
        return 2

    from gateway.kafka.worker import KafkaWorker

    if kafka.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(kafka.metrics_port)
        log.info("kafka provider: metrics on port %d", kafka.metrics_port)

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("kafka provider: %s received; finishing the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    predictor.reporting.start()
    try:
        return KafkaWorker(kafka, predictor).run(stop)
    finally:
        predictor.reporting.close()
        predictor.service.close()
        log.info("kafka provider stopped")
