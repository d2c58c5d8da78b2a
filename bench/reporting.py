"""The JSON report every benchmark writes: its figures, the machine, the conditions of the run."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import conditions
from bench.procs import PY

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def scratch_base() -> Path:
    """Where benchmarks make their temporary directories (``BENCH_TMPDIR`` or the system's)."""
    return Path(os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir())


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def report(name: str, quick: bool, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>[-quick].json`` and print a one-line digest."""
    RESULTS.mkdir(exist_ok=True)
    document = {
        "benchmark": name,
        "quick": quick,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(PY).name, "-m", f"bench.{name}", *sys.argv[1:]]),
        "machine": machine(),
        "conditions": conditions.record(scratch_base()),
        **data,
    }
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"[{name}] results in {path.relative_to(ROOT)}")
    return path
