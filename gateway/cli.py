"""``python -m gateway kafka|grpc``: the gateway's command line (thin, as uvicorn's). The REST
provider runs under gunicorn instead (``gateway.GUNICORN_ARGS``)."""

from __future__ import annotations

import argparse
import sys

from modelsync import logsetup
from modelsync.config import load_config
from modelsync.errors import ConfigError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument(
        "--config", help="configuration file (default: $CONFIG_PATH or /config/sync-config.yaml)"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("kafka", help="consume inference requests from Kafka and answer on the reply topic")
    commands.add_parser(
        "grpc", help="serve KServe v2 gRPC (inference.GRPCInferenceService) in front of the model server"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_config(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logsetup.configure(settings.sync.log_level, settings.sync.log_format)
    if args.command == "grpc":
        from gateway.grpc.serve import serve as serve_grpc  # grpcio loads only for this command

        return serve_grpc(settings)
    from gateway.kafka.serve import serve  # confluent-kafka loads only for this command

    return serve(settings)
