"""What one pre-flight costs: wall time and the child's peak RSS for a 100 MB model.

``python -m bench.preflight [--quick] [--runs N]``: builds an OpenVINO IR model whose weights
are 100 MB (a 1x5000 by 5000x5000 FP32 MatMul; 10 MB with --quick) with the OpenVINO Python
API, then runs the agent's own pre-flight child (``python -m agent.preflightchild``, as
agent/preflight.py starts it, with the default 4096 MiB limit) ``--runs`` times per mode
(``read``, ``compile``). Time is from spawn to exit (Python start and the openvino import
included: that is what the agent waits for); peak memory is the child's ru_maxrss from wait4.
The agent's own memory is not touched: openvino is only ever loaded in the child.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import report


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


def one_run(mode: str, path: Path) -> tuple[float, float]:
    started = time.monotonic()
    child = subprocess.Popen(
        [sys.executable, "-m", "agent.preflightchild", mode, str(path), str(4096 * 2**20)],
        stdout=subprocess.PIPE,
    )
    _pid, status, usage = os.wait4(child.pid, 0)
    seconds = time.monotonic() - started
    output = child.stdout.read().decode() if child.stdout else ""
    if status != 0 or '"ok": true' not in output:
        raise SystemExit(f"pre-flight {mode} failed: status {status}, {output}")
    return seconds, usage.ru_maxrss / 1024  # KiB -> MiB


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    side = 1600 if args.quick else 5000
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="modelsync-bench-preflight-") as tmp:
        path = build_model(Path(tmp), side)
        weights = (Path(tmp) / "model.bin").stat().st_size
        for mode in ("read", "compile"):
            runs = [one_run(mode, path) for _ in range(args.runs)]
            results[mode] = {
                "seconds": summary([s for s, _ in runs]),
                "peak_rss_mib": summary([m for _, m in runs]),
                "runs": [{"seconds": round(s, 3), "peak_rss_mib": round(m, 1)} for s, m in runs],
            }
            print(f"{mode}: {results[mode]['seconds']} s, {results[mode]['peak_rss_mib']} MiB")
    report("preflight", args.quick, {"weights_bytes": weights, "runs_per_mode": args.runs, **results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
