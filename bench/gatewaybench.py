"""What the gateway benchmarks share (``bench.gateway_overhead``, REST; ``bench.gateway_grpc``,
gRPC): the load tools, the gateway's configuration, CPU per call, and the method.

The method: every target is loaded in turn within a round (``goals.interleave``), ``repeats``
rounds, so a noisy minute on the shared machine hits every target; a goal is judged on the
median of per-round figures (the gateway's p50 minus the direct p50 *of the same round*, the
ratio of their throughputs) and reported with its spread. Beside the latencies, each gateway
target's CPU seconds per call (its process tree, from ``/proc``) are measured: they depend far
less on what else runs than throughput does.

Load: Debian's ``wrk`` (keep-alive HTTP/1.1) for REST; nghttp2's ``h2load`` (C, Debian's
``nghttp2-client``) for gRPC, posting one length-prefixed ``ModelInferRequest`` over ``c``
connections with latencies from its per-request log. h2load counts HTTP statuses, not gRPC
ones: a gateway's ``ok`` records prove its calls succeeded.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import yaml

from bench import goals, harness
from devstack.modelserver import ModelServer

FEATURES = {"adder": 4, "mlp": 64}
REPEATS = 3  # rounds of every target, interleaved
MODELS = tuple(FEATURES)
GRPC_PATH = "/inference.GRPCInferenceService/ModelInfer"
LUA = """
wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
"""


class Load(TypedDict):
    """One load run against one target."""

    connections: int
    requests: int
    ok_2xx: int
    errors: int
    req_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    cpu_us_per_call: float | None  # the gateway's process tree; None for the direct target


def rest_body(model: str) -> str:
    row = [1.0, 2.0, 3.0, 4.0] if model == "adder" else [0.5] * FEATURES[model]
    return json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, len(row)], "data": row}]})


BODIES = {model: rest_body(model) for model in MODELS}  # KServe v2 JSON, one row


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/versions/1/infer"


def grpc_frame(model: str) -> bytes:
    """A length-prefixed gRPC message: one ModelInferRequest with raw contents, as tritonclient sends."""
    from tritonclient.grpc import service_pb2  # the client's own stubs

    request = service_pb2.ModelInferRequest(model_name=model, model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=[1, FEATURES[model]])
    request.raw_input_contents.append(np.full(FEATURES[model], 0.5, dtype="<f4").tobytes())
    message: bytes = request.SerializeToString()
    return struct.pack(">BI", 0, len(message)) + message


def write_lua(path: Path, model: str) -> Path:
    path.write_text(LUA % rest_body(model) + harness.WRK_REPORT)
    return path


def wrk(url: str, script: Path, connections: int, seconds: float) -> Load:
    raw = harness.run_wrk(url, script, connections, seconds)
    ok = raw["requests"] - raw["non2xx"]
    return Load(
        connections=connections,
        requests=raw["requests"],
        ok_2xx=ok,
        errors=raw["non2xx"] + raw["errors"],
        req_per_s=round(ok / (raw["duration_us"] / 1e6), 1),
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        cpu_us_per_call=None,
    )


def h2load(target: str, body: Path, connections: int, seconds: float, log: Path) -> Load:
    args = ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{max(1, int(seconds))}", "-d", str(body)]
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    log.unlink(missing_ok=True)
    subprocess.run(
        [*args, *headers, "--log-file", str(log), f"http://{target}{GRPC_PATH}"],
        capture_output=True,
        check=True,
        timeout=seconds + 60,
    )
    lines = [line.split("\t") for line in log.read_text().splitlines() if line]
    ok = [int(f[2]) / 1000 for f in lines if f[1] == "200"]  # start (us), status, duration (us)
    started = [int(f[0]) for f in lines]
    span = (max(started) - min(started)) / 1e6 if len(started) > 1 else seconds
    return Load(
        connections=connections,
        requests=len(lines),
        ok_2xx=len(ok),
        errors=len(lines) - len(ok),
        req_per_s=round(len(ok) / max(span, 1e-9), 1),
        p50_ms=round(harness.percentile(ok, 50), 3),
        p90_ms=round(harness.percentile(ok, 90), 3),
        p99_ms=round(harness.percentile(ok, 99), 3),
        cpu_us_per_call=None,
    )


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its descendants (gunicorn's master and workers)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            total += harness.cpu_seconds(current)
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        todo += children.get(current, [])
    return total


class Gateway:
    """A gateway target: each run measured for the CPU its process tree spent on each 2xx,
    and every 2xx counted, warm-ups and probes included (each must have its record)."""

    def __init__(self, pid: int, run: Callable[[int, float], Load]) -> None:
        self.pid = pid
        self.run = run
        self.answered = 0

    def __call__(self, connections: int, seconds: float) -> Load:
        before = tree_cpu_seconds(self.pid)
        load = self.run(connections, seconds)
        spent = tree_cpu_seconds(self.pid) - before
        load["cpu_us_per_call"] = round(spent / max(load["ok_2xx"], 1) * 1e6, 1)
        self.answered += load["ok_2xx"]
        return load


def write_config(workdir: Path, service: dict[str, Any], grpc_port: int | None = None) -> Path:
    """A gateway configuration recording every prediction to a JSON-lines file."""
    gateway: dict[str, Any] = {
        "model_service": service,
        "reporting": {
            "spill_dir": str(workdir / "spill"),
            "sinks": [{"type": "file", "path": str(workdir / "predictions.jsonl"), "max_bytes": 1 << 30}],
        },
    }
    if grpc_port is not None:
        gateway["grpc"] = {"enabled": True, "bind": f"127.0.0.1:{grpc_port}"}
    config = {"minio": {"endpoint": "127.0.0.1:9", "bucket_name": "unused"}, "gateway": gateway}
    path = workdir / "sync-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ok_records(path: Path) -> int:
    return sum(1 for line in path.open("rb") if b'"status":"ok"' in line) if path.exists() else 0


def run_rounds(
    targets: dict[str, Callable[[int, float], Load]], connections: int, seconds: float
) -> goals.Interleaved:
    def bound(run: Callable[[int, float], Load]) -> Callable[[], Load]:
        return lambda: run(connections, seconds)

    return goals.interleave({name: bound(run) for name, run in targets.items()}, REPEATS)


def compare(results: goals.Interleaved, base: str, other: str) -> dict[str, Any]:
    """``other`` against ``base`` round by round: added p50 and p99, throughput ratio, each as
    median (min..max) of the rounds; the CPU per call of both."""
    added_p50 = _differences(results, other, base, "p50_ms")
    added_p99 = _differences(results, other, base, "p99_ms")
    ratio = results.ratios(other, base, key=lambda r: r["req_per_s"])
    out: dict[str, Any] = {
        "added_p50_ms": _spread(added_p50),
        "added_p99_ms": _spread(added_p99),
        "throughput_ratio": _spread(ratio),
        "samples": {"added_p50_ms": added_p50, "added_p99_ms": added_p99, "throughput_ratio": ratio},
    }
    for name in (base, other):
        cpu = [r["cpu_us_per_call"] for r in results.results[name] if r["cpu_us_per_call"] is not None]
        if cpu:
            out[f"{name}_cpu_us_per_call"] = _spread(cpu)
        out[f"{name}_p50_ms"] = _spread(results.values(name, key=lambda r: r["p50_ms"]))
        out[f"{name}_req_per_s"] = _spread(results.values(name, key=lambda r: r["req_per_s"]))
    return out


def _differences(results: goals.Interleaved, top: str, bottom: str, key: str) -> list[float]:
    pairs = zip(results.results[top], results.results[bottom], strict=True)
    return [round(a[key] - b[key], 3) for a, b in pairs]


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(harness.median(values), 3), "min": min(values), "max": max(values)}


def overhead_goals(
    benchmark: str, label: str, compared: dict[str, Any], p50_ms: float, p99_ms: float, ratio: float
) -> list[dict[str, Any]]:
    """The three floors of a gateway against its direct baseline, as ``Goal.as_dict()`` rows."""
    samples = compared["samples"]
    return [
        goals.Goal(
            benchmark, f"{label} added p50", tuple(samples["added_p50_ms"]), p50_ms, False, " ms"
        ).as_dict(),
        goals.Goal(
            benchmark, f"{label} added p99", tuple(samples["added_p99_ms"]), p99_ms, False, " ms"
        ).as_dict(),
        goals.Goal(
            benchmark, f"{label} throughput vs direct", tuple(samples["throughput_ratio"]), ratio
        ).as_dict(),
    ]


def records_goal(benchmark: str, label: str, ok_2xx: int, records: int) -> dict[str, Any]:
    """Every 2xx the gateway answered has its record (missing records, at most 0)."""
    missing = float(max(ok_2xx - records, 0))
    return goals.Goal(benchmark, f"{label} 2xx without a record", (missing,), 0.0, False).as_dict()


def pinned_to(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None else []


def start_scenario(workdir: Path, scenario: str) -> tuple[Path, ModelServer, int | None]:
    """The scenario's directory, its model server (on CPU 0 when ``pinned``), and the CPU the
    gateways go on (1 when ``pinned``; None: anywhere)."""
    run_dir = workdir / scenario
    run_dir.mkdir()
    pinned = scenario == "pinned"
    server = ModelServer(run_dir / "mlserver.log", cpus={0} if pinned else None).start()
    return run_dir, server, 1 if pinned else None


def start_rest(workdir: Path, service: dict[str, Any], cpu: int | None) -> tuple[harness.Proc, str, Path]:
    """The REST provider as it ships (gunicorn), in ``workdir``; its process, URL and config."""
    from gateway import gunicorn_command
    from tests.support.helpers import free_port, http_ok, wait_for

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_config(workdir, service, grpc_port=free_port())
    env = harness.clean_env(CONFIG_PATH=str(config), MODELSYNC_GATEWAY_BIND=f"127.0.0.1:{port}")
    proc = harness.Proc([*pinned_to(cpu), *gunicorn_command()], env, workdir / "rest.log")
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, what="REST gateway")
    return proc, f"http://127.0.0.1:{port}", config


def start_grpc(workdir: Path, config: Path, cpu: int | None) -> tuple[harness.Proc, str]:
    """``python -m gateway grpc`` on the configuration ``start_rest`` wrote (its grpc.bind)."""
    bind = yaml.safe_load(config.read_text())["gateway"]["grpc"]["bind"]
    env = harness.clean_env(CONFIG_PATH=str(config))
    proc = harness.Proc([*pinned_to(cpu), harness.PY, "-m", "gateway", "grpc"], env, workdir / "grpc.log")
    return proc, str(bind)


Measure = Callable[[Path, str, float], tuple[dict[str, Any], list[dict[str, Any]]]]


def run_benchmark(
    benchmark: str, measure: Measure, quick: bool, seconds: tuple[float, float], **extra: Any
) -> None:
    """Every scenario (``pinned`` only when ``quick``), each ``measure``d in a fresh workspace,
    into one report with its goals. ``seconds``: one run's length, quick and full."""
    length = seconds[0] if quick else seconds[1]
    scenarios = ("pinned",) if quick else ("shared", "pinned")
    summary: dict[str, Any] = {}
    found_goals: list[dict[str, Any]] = []
    with harness.workspace(benchmark.replace("_", "-")) as workdir:
        for scenario in scenarios:
            found, met = measure(workdir, scenario, length)
            summary.update(found)
            found_goals += met
    report = {
        "seconds_per_run": length,
        "repeats": REPEATS,
        **extra,
        "summary": summary,
        "goals": found_goals,
    }
    harness.report(benchmark, quick, report)
