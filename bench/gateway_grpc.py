"""Benchmark 8b: what the gateway's gRPC provider adds over calling the model server's gRPC port
directly, and what the REST provider's gRPC model-service adapter costs.

Same models and scenarios as ``bench.gateway_overhead`` (MLServer, ``adder`` and ``mlp``;
``shared`` cores, or ``pinned``: the model server on CPU 0, the gateways on CPU 1), every
prediction recorded to a JSON-lines file sink. Targets, interleaved within each round, 3
rounds (``bench/gatewaybench.py`` has the method and the load tools):

- gRPC (``h2load``): ``direct`` (MLServer's gRPC port) and ``grpc-gateway`` (``python -m
  gateway grpc`` over ``protocol: grpc``, messages passed through as bytes);
- REST (``wrk``): ``rest-over-http`` (the REST provider as it ships) and ``rest-over-grpc``
  (the same over ``gateway.model_service.protocol: grpc``: JSON converted to protobuf and
  back on every call).

Goals (issue 16), ``pinned``, ``mlp``, c16, the gRPC gateway against direct gRPC: added p50
<= 1.0 ms, added p99 <= 5 ms, throughput >= 0.85x; and an ``ok`` record for every 2xx of both
gateways over gRPC. The gateways' CPU per call is reported beside them. ``--quick``:
``pinned`` only, 1 s runs.
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import gatewaybench as gb
from bench import harness
from devstack.modelserver import ModelServer
from tests.support.helpers import wait_for

BENCHMARK = "gateway_grpc"
GRPC_TARGETS = ("direct", "grpc-gateway")
REST_TARGETS = ("rest-over-http", "rest-over-grpc")


class Gateways:
    """The REST provider over REST; over gRPC, the REST provider and the gRPC provider (one
    configuration, one sink): all on CPU 1 when pinned."""

    def __init__(self, run_dir: Path, server: ModelServer, cpu: int | None) -> None:
        self.procs: list[harness.Proc] = []
        self.urls: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        over_grpc = {"protocol": "grpc", "grpc_target": server.grpc_target}
        for name, service in (("rest-over-http", {"url": server.url}), ("rest-over-grpc", over_grpc)):
            proc, url, config = gb.start_rest(run_dir / name, service, cpu)
            self.procs.append(proc)
            self.urls[name], self.pids[name] = url, proc.pid
        proc, target = gb.start_grpc(run_dir / "rest-over-grpc", config, cpu)
        self.procs.append(proc)
        self.urls["grpc-gateway"], self.pids["grpc-gateway"] = target, proc.pid
        self.sink = run_dir / "rest-over-grpc" / "predictions.jsonl"

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()


def targets_for(
    run_dir: Path, server: ModelServer, gateways: Gateways, model: str
) -> dict[str, Callable[[int, float], gb.Load]]:
    body, log = run_dir / f"{model}.grpc", run_dir / "h2load.log"
    body.write_bytes(gb.grpc_frame(model))
    script = gb.write_lua(run_dir / f"{model}.lua", model)
    urls = {"direct": server.grpc_target, **gateways.urls}

    def grpc(name: str) -> Callable[[int, float], gb.Load]:
        return lambda c, s: gb.h2load(urls[name], body, c, s, log)

    def rest(name: str) -> Callable[[int, float], gb.Load]:
        return lambda c, s: gb.wrk(urls[name] + gb.infer_path(model), script, c, s)

    def measured(name: str, run: Callable[[int, float], gb.Load]) -> Callable[[int, float], gb.Load]:
        return gb.Gateway(gateways.pids[name], run) if name in gateways.pids else run

    made = {name: grpc(name) for name in GRPC_TARGETS} | {name: rest(name) for name in REST_TARGETS}
    return {name: measured(name, run) for name, run in made.items()}


def measure(workdir: Path, scenario: str, seconds: float) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    run_dir, server, cpu = gb.start_scenario(workdir, scenario)
    summary: dict[str, Any] = {}
    goals: list[dict[str, Any]] = []
    gateways: Gateways | None = None
    try:
        gateways = Gateways(run_dir, server, cpu)
        warm, answered = gb.ok_records(gateways.sink), 0
        for model in gb.MODELS:
            targets = targets_for(run_dir, server, gateways, model)
            wait_for(functools.partial(_answers, targets["grpc-gateway"]), 30, what="gRPC gateway")
            for run in targets.values():
                run(16, 2)  # warm-up: connections, imports, caches
            results = {c: gb.run_rounds(targets, c, seconds) for c in (1, 16)}
            answered += sum(_answered(targets[name]) for name in ("grpc-gateway", "rest-over-grpc"))
            label = f"{scenario}/{model}"
            summary[label] = summarise(results)
            if label == "pinned/mlp":
                goals += gb.overhead_goals(BENCHMARK, "gRPC c16", summary[label]["grpc_c16"], 1.0, 5.0, 0.85)
            print(f"[{BENCHMARK}] {label} c16: {json.dumps(summary[label]['grpc_c16'])}", flush=True)
        sink = gateways.sink
        # Load tools stop with calls in flight: those may add records after their count.
        wait_for(lambda: gb.ok_records(sink) - warm >= answered, 60, what="an ok record per 2xx")
        recorded = gb.ok_records(sink) - warm
        summary[f"{scenario}/records"] = {"ok_2xx": answered, "ok_records": recorded}
        goals.append(gb.records_goal(BENCHMARK, f"{scenario} over gRPC", answered, recorded))
    finally:
        if gateways is not None:
            gateways.stop()
        server.stop()
    return summary, goals


def _answers(target: Callable[[int, float], gb.Load]) -> bool:
    return target(1, 1)["ok_2xx"] > 0


def _answered(target: Callable[[int, float], gb.Load]) -> int:
    """Every 2xx of a gateway target (``targets_for`` made it a ``gb.Gateway``)."""
    assert isinstance(target, gb.Gateway)
    return target.answered


def summarise(results: dict[int, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for c, found in results.items():
        out[f"grpc_c{c}"] = gb.compare(found, "direct", "grpc-gateway")
        out[f"adapter_c{c}"] = gb.compare(found, "rest-over-http", "rest-over-grpc")
    out["runs"] = {f"c{c}": found.results for c, found in results.items()}
    return out


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is not installed: apt-get install -y nghttp2-client")
    gb.run_benchmark(BENCHMARK, measure, args.quick, (1.0, 5.0), tools=["h2load", "wrk"])


if __name__ == "__main__":
    main()
