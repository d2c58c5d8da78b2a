"""What every benchmark shares, under one name: ``from bench import harness``.

The pieces live in modules of their own (``bench.procs``: child processes and /proc;
``bench.s3server``: moto's server; ``bench.stack``: the agent and webhook on a volume;
``bench.wrk``: the load generator; ``bench.stats``; ``bench.reporting`` and
``bench.conditions``: the JSON report and the conditions of the run); this module re-exports
them and keeps the scratch-directory and argument helpers.

Nothing here is a test: benchmarks are run by hand (``make bench``, ``python -m bench.<name>``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.goals import DEFAULT_REPEATS
from bench.procs import ACCESS_KEY, PY, SECRET_KEY, Proc, clean_env, cpu_seconds, proc_status
from bench.reporting import RESULTS, ROOT, machine, report, scratch_base
from bench.s3server import S3
from bench.stack import TOKEN, Stack
from bench.stats import median, percentile, spread, summary
from bench.wrk import WRK_REPORT, run_wrk, wrk_report
from tests.support.helpers import free_port, minio_event, wait_for

__all__ = [
    "ACCESS_KEY",
    "PY",
    "RESULTS",
    "ROOT",
    "S3",
    "SECRET_KEY",
    "TOKEN",
    "WRK_REPORT",
    "Proc",
    "Stack",
    "clean_env",
    "cpu_seconds",
    "free_port",
    "machine",
    "median",
    "minio_event",
    "parse_args",
    "percentile",
    "proc_status",
    "random_bytes",
    "report",
    "run_wrk",
    "scratch",
    "spread",
    "summary",
    "wait_for",
    "workspace",
    "wrk_report",
]


def scratch(prefix: str) -> Path:
    """A disk-backed temporary directory (``/tmp`` here is on the root file system)."""
    return Path(tempfile.mkdtemp(prefix=f"modelsync-bench-{prefix}-", dir=scratch_base()))


@contextlib.contextmanager
def workspace(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = scratch(prefix)
    try:
        yield path
    finally:
        if not keep and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(path, ignore_errors=True)


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


def parser(description: str) -> argparse.ArgumentParser:
    """The options every benchmark takes; a benchmark may add its own before parsing."""
    result = argparse.ArgumentParser(description=description)
    result.add_argument("--quick", action="store_true", help="small sizes (what `make bench` runs)")
    result.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        help=f"repetitions of each measurement, variants interleaved (default {DEFAULT_REPEATS})",
    )
    return result


def parse_args(description: str) -> argparse.Namespace:
    return parser(description).parse_args()
