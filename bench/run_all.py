"""Every benchmark, one after the other (never in parallel: they would measure each other).

``python -m bench.run_all [--quick] [--only latency,burst]``; each writes its JSON under
``bench/results/``. ``make bench`` is the quick pass (about 15 minutes), ``make bench-full``
the sizes BENCHMARKS.md reports.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench import goals
from bench.harness import RESULTS

ORDER = [
    "latency",
    "webhook_throughput",
    "burst",
    "download",
    "memory",
    "reconcile",
    "big_config",
    "gateway_overhead",
    "gateway_grpc",
    "reporter_loss",
    "kafka_throughput",
    "fleet",
    "preflight",
]


def conditions_line(path: Path) -> str:
    """One line a report: what else the machine was doing while the benchmark ran."""
    try:
        found = json.loads(path.read_text()).get("conditions") or {}
    except (OSError, ValueError):
        return f"{path.stem}: unreadable"
    start, end = found.get("load_average_at_start", ["?"]), found.get("load_average_at_end", ["?"])
    cpu = found.get("cpu_over_run", {})
    shares = ", ".join(f"{k.removesuffix('_pct')} {v}%" for k, v in cpu.items())
    return f"{path.stem}: load {start[0]} -> {end[0]}; {shares or 'no CPU figures'}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    args = parser.parse_args()
    names = [n for n in ORDER if not args.only or n in args.only.split(",")]
    failed = []
    reports = []
    began = time.time()
    for name in names:
        started = time.monotonic()
        print(f"=== bench.{name} {'--quick' if args.quick else ''}", flush=True)
        code = subprocess.call([sys.executable, "-m", f"bench.{name}", *(["--quick"] if args.quick else [])])
        print(f"=== bench.{name}: exit {code} in {time.monotonic() - started:.0f}s", flush=True)
        if code:
            failed.append(name)
        reports.append(RESULTS / f"{name}{'-quick' if args.quick else ''}.json")
    fresh = [p for p in reports if p.exists() and p.stat().st_mtime >= began]
    measured = goals.collect(fresh)
    if measured:
        print("\n=== goals (median of interleaved repetitions)")
        print(goals.table(measured))
    if fresh:
        print("\n=== conditions (load average at start -> end, CPU shares over the run)")
        print("\n".join(conditions_line(p) for p in fresh))
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
