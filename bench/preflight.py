"""What one pre-flight costs: wall time and the child's peak RSS for a 100 MB model.

``python -m bench.preflight [--quick] [--repeats N]``: builds an OpenVINO IR model whose weights
are 100 MB (a 1x5000 by 5000x5000 FP32 MatMul; 10 MB with --quick) with the OpenVINO Python
API, then runs the agent's own pre-flight child (``python -m agent.preflightchild``, as
agent/preflight.py starts it, with the default 4096 MiB limit) ``--repeats`` times per mode
(``read``, ``compile``; the modes interleaved). Time is from spawn to exit (Python start and
the openvino import included: that is what the agent waits for); peak memory is the child's
ru_maxrss from wait4. The agent's own memory is not touched: openvino is only ever loaded in the child.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import harness
from bench.goals import Goal, interleave
from modelsync.config import SyncConfig

NAME = "preflight"
MODES = ("read", "compile")
DEFAULT_LIMIT_MIB = SyncConfig.preflight_memory_mb  # the default, as the agent starts the child


def build_model(directory: Path, side: int) -> Path:
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    data = ops.parameter([1, side], ov.Type.f32, name="input")
    weights = ops.constant(np.random.default_rng(1).standard_normal((side, side), dtype=np.float32))
    model = ov.Model([ops.result(ops.matmul(data, weights, False, False))], [data], "big")
    path = directory / "model.xml"
    ov.save_model(model, path, compress_to_fp16=False)
    return path


def build_model_elsewhere(directory: Path, side: int) -> Path:
    """``build_model`` in a process of its own. A child's ru_maxrss is never below the
    high-water mark of the process it was spawned from (exec keeps the old address space's
    mark), so a driver that had loaded openvino and a 100 MB array reported its own peak as
    every child's (266 MiB for ``read`` in every run of 2026-12-06)."""
    code = (
        "from pathlib import Path; from bench.preflight import build_model; "
        f"build_model(Path({str(directory)!r}), {side})"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=harness.ROOT)
    return directory / "model.xml"


def one_run(mode: str, path: Path) -> tuple[float, float]:
    """Seconds from spawn to exit, and the child's own peak RSS in MiB.

    ``ru_maxrss`` from wait4 is at least the driver's high-water mark at the spawn (exec keeps
    the old address space's mark): when it is above that, it is the child's own peak; when not,
    the child's ``VmHWM`` (its own address space's mark), read every 5 ms while it runs."""
    floor = harness.proc_status(os.getpid()).get("VmHWM", 0)
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "agent.preflightchild", mode, str(path), str(DEFAULT_LIMIT_MIB * 2**20)],
        stdout=subprocess.PIPE,
    )
    polled = 0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        polled = max(polled, harness.proc_status(child.pid).get("VmHWM", 0))
        time.sleep(0.005)
    seconds = time.monotonic() - started
    output = child.stdout.read().decode() if child.stdout else ""
    if status != 0 or '"ok": true' not in output:
        raise SystemExit(f"pre-flight {mode} failed: status {status}, {output}")
    peak = usage.ru_maxrss if usage.ru_maxrss > floor else polled
    return seconds, peak / 1024  # KiB -> MiB


def main() -> int:
    parser = harness.parser(__doc__ or "")
    parser.add_argument("--runs", type=int, default=None, help="the older name of --repeats")
    args = parser.parse_args()
    repeats = args.runs or args.repeats
    side = 1600 if args.quick else 5000
    with tempfile.TemporaryDirectory(prefix="modelsync-bench-preflight-") as tmp:
        path = build_model_elsewhere(Path(tmp), side)
        weights = (Path(tmp) / "model.bin").stat().st_size
        rounds = interleave({mode: functools.partial(one_run, mode, path) for mode in MODES}, repeats)
    # The floor under every child's figure (see build_model_elsewhere): far below them now.
    driver_peak = round(harness.proc_status(os.getpid()).get("VmHWM", 0) / 1024, 1)
    results: dict[str, Any] = {}
    for mode in MODES:
        runs = rounds.results[mode]
        results[mode] = {
            "seconds": harness.spread([s for s, _ in runs], 3),
            "peak_rss_mib": harness.spread([m for _, m in runs], 1),
            "runs": [{"seconds": round(s, 3), "peak_rss_mib": round(m, 1)} for s, m in runs],
        }
        print(f"{mode}: {results[mode]['seconds']} s, {results[mode]['peak_rss_mib']} MiB")
    goals = [
        Goal(
            NAME,
            f"{mode}: child's peak RSS, {weights / 1e6:.0f} MB model, under the default limit",
            tuple(m for _, m in rounds.results[mode]),
            DEFAULT_LIMIT_MIB,
            False,
            " MiB",
            "sync.preflight_memory_mb's default; BENCHMARKS.md states no time floor",
        )
        for mode in MODES
    ]
    harness.report(
        NAME,
        args.quick,
        {
            "weights_bytes": weights,
            "runs_per_mode": repeats,
            "driver_peak_rss_mib": driver_peak,
            **results,
            "goals": [g.as_dict() for g in goals],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
