"""Benchmark 8: what the prediction gateway (REST) adds over calling the model server directly.

The model server is MLServer (KServe v2 REST, as OVMS) with two models from
``devstack/modelserver``: ``adder``, which costs almost nothing (so only the gateway's own
cost shows), and ``mlp``, a dense network costing about 3 ms of CPU a call (a small real
model). The gateway runs as it ships (gunicorn, ``gateway/gunicorn_conf.py``), recording
every prediction to a JSON-lines file sink. Load: ``wrk`` (keep-alive), the same KServe v2
body to the same model; direct and gateway runs interleaved, 3 rounds, judged on the median of
per-round differences (``bench/gatewaybench.py`` has the method); the gateway's CPU per call
beside them.

Scenarios:
- ``shared``: model server, gateway and wrk share both cores (the gateway's CPU is taken
  from the model server's);
- ``pinned``: the model server on CPU 0, the gateway on CPU 1 (as when the gateway has its
  own CPU budget, e.g. its own container limit), wrk unpinned.

Goals (BENCHMARKS.md, benchmark 8), at c16 in every scenario and model: added p50 <= 1.5 ms,
added p99 <= 5 ms, throughput >= 0.8x direct; and every 2xx recorded. ``--quick``: ``pinned``
only, 2 s runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import gatewaybench as gb
from bench import harness
from bench.gatewaybench import BODIES, LUA, infer_path, wrk
from devstack.modelserver import ModelServer
from tests.support.helpers import wait_for

# Other benchmarks load the same bodies the same way (reporter_loss, kafka_throughput).
__all__ = ["BODIES", "LUA", "infer_path", "main", "wrk"]
BENCHMARK = "gateway_overhead"


def measure_model(
    run_dir: Path, server: ModelServer, gateway: tuple[harness.Proc, str], model: str, seconds: float
) -> tuple[dict[int, Any], int]:
    """Both concurrencies for one model; the runs and every 2xx the gateway answered."""
    proc, url = gateway
    script = gb.write_lua(run_dir / f"{model}.lua", model)
    direct_url, gateway_url = server.url + gb.infer_path(model), url + gb.infer_path(model)
    through = gb.Gateway(proc.pid, lambda c, s: gb.wrk(gateway_url, script, c, s))
    targets: dict[str, Callable[[int, float], gb.Load]] = {
        "direct": lambda c, s: gb.wrk(direct_url, script, c, s),
        "gateway": through,
    }
    for run in targets.values():
        run(16, 2)  # warm-up: connections, imports, caches
    results = {c: gb.run_rounds(targets, c, seconds) for c in (1, 16)}
    return results, through.answered


def measure(workdir: Path, scenario: str, seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_dir, server, cpu = gb.start_scenario(workdir, scenario)
    summary: dict[str, Any] = {}
    goals: list[dict[str, Any]] = []
    proc: harness.Proc | None = None
    try:
        proc, url, _config = gb.start_rest(run_dir / "gateway", {"url": server.url}, cpu)
        sink = run_dir / "gateway" / "predictions.jsonl"
        warm, answered = gb.ok_records(sink), 0
        for model in gb.MODELS:
            results, ok = measure_model(run_dir, server, (proc, url), model, seconds)
            answered += ok
            label = f"{scenario}/{model}"
            summary[label] = {f"c{c}": gb.compare(found, "direct", "gateway") for c, found in results.items()}
            summary[label]["runs"] = {f"c{c}": found.results for c, found in results.items()}
            goals += gb.overhead_goals(BENCHMARK, f"{label} c16", summary[label]["c16"], 1.5, 5.0, 0.8)
            print(f"[{BENCHMARK}] {label}: {json.dumps(summary[label]['c16'])}", flush=True)
        # wrk stops with requests in flight: those may add records after its count.
        wait_for(lambda: gb.ok_records(sink) - warm >= answered, 60, what="an ok record per 2xx")
        recorded = gb.ok_records(sink) - warm
        summary[f"{scenario}/records"] = {"ok_2xx": answered, "ok_records": recorded}
        goals.append(gb.records_goal(BENCHMARK, scenario, answered, recorded))
    finally:
        if proc is not None:
            proc.stop()
        server.stop()
    return summary, goals


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    gb.run_benchmark(BENCHMARK, measure, args.quick, (2.0, 10.0), tool="wrk")


if __name__ == "__main__":
    main()
