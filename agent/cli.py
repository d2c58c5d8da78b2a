"""``python -m agent {run,health,resync,status}``: a thin ``main() -> int``, as in uvicorn."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType

from modelsync import logsetup, s3
from modelsync.config import Config, load_config
from modelsync.errors import ConfigError, ModelsyncError, SchemaViolation
from modelsync.intents import IntentWriter, ResyncFields
from modelsync.results import ResultBox, ResyncStatus

log = logging.getLogger(__name__)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description=__doc__)
    parser.add_argument("--config", help="config file (default: $CONFIG_PATH or /config/sync-config.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the sync agent until SIGTERM")
    sub.add_parser("health", help="exit 0 when MinIO, the models directory and config.json are fine")
    resync = sub.add_parser("resync", help="ask the running agent (in fleet mode: every replica) to resync")
    resync.add_argument("--model")
    resync.add_argument("--version", type=int)
    resync.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the outcome (0: don't)")
    status = sub.add_parser("status", help="print models, versions and errors")
    status.add_argument("--json", action="store_true", help="print the raw status document")
    return parser


# What a shell reports for a filter that SIGPIPE ended (``yes | head -1``): 128 + 13.
READER_GONE = 128 + signal.SIGPIPE


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone() -> int:
    """Our output's reader went away (``status | head -1``): stop quietly, with the status a
    filter ended by SIGPIPE has. Python ignores SIGPIPE, so the write raised instead; its last
    flush of stdout at exit must not raise again, nor a message to a closed stderr."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    return READER_GONE


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    try:
        return _parser().parse_args(argv)
    except SystemExit:
        sys.stdout.flush()  # --help: a closed pipe shows here (BrokenPipeError), not at exit
        raise


def _main(argv: Sequence[str] | None) -> int:
    args = _parse(argv)
    try:
        config = load_config(args.config)
        if args.command in ("run", "health"):
            s3.require_credentials(config)
        if args.command != "health":  # health reports it as a problem instead
            config.check_state_dir()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logsetup.configure(config.sync.log_level, config.sync.log_format)
    if args.command == "run":
        # A server: a broken pipe inside it is a fault of its own, not a reader leaving.
        return _run(config, args)
    commands = {"health": _health, "resync": _resync, "status": _status}
    code = commands[args.command](config, args)
    sys.stdout.flush()  # a closed pipe shows here, not in Python's flush at exit
    return code


def _run(config: Config, args: argparse.Namespace) -> int:
    from agent.service import Agent

    log.info("S3 credentials: %s", _credential_source(config))
    try:
        agent = Agent(config)
    except ModelsyncError as exc:
        log.critical("cannot start: %s", exc)
        return 1

    def _stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        agent.request_stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    return agent.run()


def _credential_source(config: Config) -> str:
    """Which source, and what identifies it (a role, a file, a key's name): never a secret."""
    choice = s3.credentials(config.minio)
    return "none (anonymous)" if choice is None else f"{choice.source} ({choice.detail})"


def _health(config: Config, args: argparse.Namespace) -> int:
    from agent.health import degraded, problems

    print(f"S3 credentials: {_credential_source(config)}")
    found = problems(config)
    for problem in found:
        print(f"unhealthy: {problem}", file=sys.stderr)
    slower = degraded(config)
    for problem in slower:
        print(f"degraded: {problem}", file=sys.stderr)
    if not found:
        print("degraded" if slower else "healthy")
    return 1 if found else 0


def _resync(config: Config, args: argparse.Namespace) -> int:
    if args.version is not None and not args.model:
        print("--version needs --model", file=sys.stderr)
        return 2
    target: ResyncFields = {}
    if args.model is not None:
        target["model"] = args.model
    if args.version is not None:
        target["version"] = args.version
    writer = IntentWriter(config.intents_dir)
    try:
        intent = writer.new("resync", **target)
    except SchemaViolation as exc:
        print(f"invalid resync request: {exc}", file=sys.stderr)
        return 2
    if config.kafka_events is None:
        writer.write_all([intent])
    else:
        # Fleet mode: on the event topic, so every replica resyncs; --wait reports this one.
        from modelsync.fleet import PublishFailed, publish_resync

        try:
            publish_resync(config.kafka_events, intent)
        except PublishFailed as exc:
            print(f"{exc}: nothing was requested", file=sys.stderr)
            return 1
    if args.wait <= 0:
        print(json.dumps({"id": intent["id"], "status": "queued"}))
        return 0
    outcome = ResultBox(config.results_dir).wait(intent["id"], args.wait)
    if outcome is None:
        print(json.dumps({"id": intent["id"], "status": "queued"}))
        print(f"no outcome within {args.wait:g}s: is the agent running?", file=sys.stderr)
        return 1
    print(json.dumps(outcome, indent=2))
    return 0 if outcome.get("status") == ResyncStatus.APPLIED else 1


def _status(config: Config, args: argparse.Namespace) -> int:
    from agent.statusview import render

    try:
        status = json.loads(config.status_path.read_bytes())
    except FileNotFoundError:
        print(f"no status at {config.status_path}: the agent has not run yet", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"cannot read {config.status_path}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=2) if args.json else render(status))
    return 0
