"""Benchmark 8b: what the gateway's gRPC provider adds over calling the model server's gRPC port
directly, and what the REST provider's gRPC model-service adapter costs.

Same models and scenarios as ``bench.gateway_overhead`` (MLServer, ``adder`` and ``mlp``;
``shared`` cores, or ``pinned``: the model server on CPU 0, the gateway on CPU 1), every
prediction recorded to a JSON-lines file sink. Load, alternating targets round by round:

- gRPC: nghttp2's ``h2load`` (C, Debian's ``nghttp2-client``) posting one KServe v2
  ``ModelInferRequest`` (raw contents, as tritonclient sends) as a gRPC frame over ``c``
  connections; latencies from its per-request log. Targets: ``direct`` (MLServer's gRPC port)
  and ``grpc-gateway`` (``python -m gateway grpc`` over ``protocol: grpc``, messages passed
  through as bytes).
- REST: ``wrk`` as in ``bench.gateway_overhead``. Targets: ``rest-over-http`` (the REST
  provider as it ships) and ``rest-over-grpc`` (the same, ``gateway.model_service.protocol:
  grpc``: JSON converted to protobuf and back on every call).

h2load counts HTTP statuses, not gRPC ones: every ``grpc-gateway`` 2xx must have an ``ok``
record, which proves the calls succeeded; ``direct`` gets the same bytes.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bench import harness
from bench.gateway_overhead import BODIES, LUA, infer_path, summarise, wrk
from devstack.modelserver import ModelServer
from gateway import gunicorn_command
from tests.support.helpers import free_port, http_ok, wait_for

FEATURES = {"adder": 4, "mlp": 64}
PATH = "/inference.GRPCInferenceService/ModelInfer"


def grpc_frame(model: str) -> bytes:
    """A length-prefixed gRPC message: one ModelInferRequest, like tritonclient's."""
    from tritonclient.grpc import service_pb2  # the client's own stubs

    request = service_pb2.ModelInferRequest(model_name=model, model_version="1")
    request.inputs.add(name="x", datatype="FP32", shape=[1, FEATURES[model]])
    request.raw_input_contents.append(np.full(FEATURES[model], 0.5, dtype="<f4").tobytes())
    message = request.SerializeToString()
    return struct.pack(">BI", 0, len(message)) + message


def h2load(target: str, body: Path, connections: int, seconds: float, log: Path) -> dict[str, Any]:
    args = ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{int(seconds)}", "-d", str(body)]
    headers = ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    log.unlink(missing_ok=True)
    subprocess.run(
        [*args, *headers, "--log-file", str(log), f"http://{target}{PATH}"],
        capture_output=True,
        check=True,
        timeout=seconds + 60,
    )
    lines = [line.split("\t") for line in log.read_text().splitlines() if line]
    ok = [int(f[2]) / 1000 for f in lines if f[1] == "200"]  # start (us), status, duration (us)
    started = [int(f[0]) for f in lines]
    span = (max(started) - min(started)) / 1e6 if len(started) > 1 else seconds
    return {
        "connections": connections,
        "requests": len(lines),
        "ok_2xx": len(ok),
        "errors": len(lines) - len(ok),
        "req_per_s": round(len(ok) / max(span, 1e-9), 1),
        "p50_ms": round(harness.percentile(ok, 50), 3),
        "p90_ms": round(harness.percentile(ok, 90), 3),
        "p99_ms": round(harness.percentile(ok, 99), 3),
    }


def write_config(workdir: Path, service: dict[str, Any], grpc_port: int) -> Path:
    config = {
        "minio": {"endpoint": "127.0.0.1:9", "bucket_name": "unused"},
        "gateway": {
            "model_service": service,
            "grpc": {"enabled": True, "bind": f"127.0.0.1:{grpc_port}"},
            "reporting": {
                "spill_dir": str(workdir / "spill"),
                "sinks": [{"type": "file", "path": str(workdir / "predictions.jsonl"), "max_bytes": 1 << 30}],
            },
        },
    }
    path = workdir / "sync-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def ok_records(path: Path) -> int:
    return sum(1 for line in path.open("rb") if b'"status":"ok"' in line) if path.exists() else 0


def start_gateways(
    run_dir: Path, server: ModelServer, pinned: bool
) -> tuple[list[harness.Proc], dict[str, str]]:
    """The gRPC provider and the REST provider over gRPC (one file), the REST provider over REST."""
    pin = ["taskset", "-c", "1"] if pinned else []
    procs: list[harness.Proc] = []
    urls: dict[str, str] = {}
    for name, service in (
        ("over-grpc", {"protocol": "grpc", "grpc_target": server.grpc_target}),
        ("over-http", {"url": server.url}),
    ):
        workdir = run_dir / name
        workdir.mkdir()
        grpc_port, rest_port = free_port(), free_port()
        env = harness.clean_env(
            CONFIG_PATH=str(write_config(workdir, service, grpc_port)),
            MODELSYNC_GATEWAY_BIND=f"127.0.0.1:{rest_port}",
        )
        procs.append(harness.Proc([*pin, *gunicorn_command()], env, workdir / "rest.log"))
        urls[f"rest-{name}"] = f"http://127.0.0.1:{rest_port}"
        wait_for(lambda p=rest_port: http_ok(f"http://127.0.0.1:{p}/healthz"), 30, what="REST gateway")
        if name == "over-grpc":
            command = [*pin, harness.PY, "-m", "gateway", "grpc"]
            procs.append(harness.Proc(command, env, workdir / "grpc.log"))
            urls["grpc-gateway"] = f"127.0.0.1:{grpc_port}"
    return procs, urls


def measure(
    workdir: Path, scenario: str, model: str, seconds: float, rounds: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    run_dir = workdir / f"{scenario}-{model}"
    run_dir.mkdir()
    pinned = scenario == "pinned"
    server = ModelServer(run_dir / "mlserver.log", cpus={0} if pinned else None).start()
    procs: list[harness.Proc] = []
    rows: list[dict[str, Any]] = []
    try:
        procs, urls = start_gateways(run_dir, server, pinned)
        body, script, log = run_dir / "request.grpc", run_dir / "infer.lua", run_dir / "h2load.log"
        body.write_bytes(grpc_frame(model))
        script.write_text(LUA % BODIES[model] + harness.WRK_REPORT)
        grpc_targets = {"direct": server.grpc_target, "grpc-gateway": urls["grpc-gateway"]}
        rest_targets = {name: urls[name] + infer_path(model) for name in ("rest-over-http", "rest-over-grpc")}

        def run(name: str, connections: int, length: float) -> dict[str, Any]:
            if name in grpc_targets:
                return h2load(grpc_targets[name], body, connections, length, log)
            return wrk(rest_targets[name], script, connections, length)

        wait_for(lambda: run("grpc-gateway", 1, 1)["ok_2xx"] > 0, 30, what="gRPC gateway")
        for name in [*grpc_targets, *rest_targets]:
            run(name, 16, 2)  # warm-up: connections, imports, caches
        sink = run_dir / "over-grpc" / "predictions.jsonl"
        warm = ok_records(sink)
        for connections in (1, 16):
            for round_ in range(rounds):
                for name in [*grpc_targets, *rest_targets]:
                    row = {"scenario": scenario, "model": model, "target": name, "round": round_}
                    row.update(run(name, connections, seconds))
                    rows.append(row)
                    print(f"[gateway_grpc] {row}", flush=True)
        through = sum(r["ok_2xx"] for r in rows if r["target"] in ("grpc-gateway", "rest-over-grpc"))
        wait_for(lambda: ok_records(sink) - warm >= through, 60, what="an ok record per 2xx")
        check = {"ok_2xx": through, "ok_records": ok_records(sink) - warm}
    finally:
        for proc in procs:
            proc.stop()
        server.stop()
    return rows, check


def compare(rows: list[dict[str, Any]], base: str, other: str, connections: int) -> dict[str, Any]:
    """``summarise``'s figures with ``base`` as "direct" and ``other`` as "gateway"."""
    renamed = [
        {**r, "target": "direct" if r["target"] == base else "gateway"}
        for r in rows
        if r["target"] in (base, other)
    ]
    return summarise(renamed, connections)


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    if shutil.which("h2load") is None:
        raise SystemExit("h2load is not installed: apt-get install -y nghttp2-client")
    seconds, rounds = (2.0, 1) if args.quick else (5.0, 3)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with harness.workspace("gateway-grpc") as workdir:
        for scenario in ("shared", "pinned"):
            for model in ("adder", "mlp"):
                found, check = measure(workdir, scenario, model, seconds, rounds)
                rows += found
                summary[f"{scenario}/{model}"] = {
                    "records_for_2xx": check,
                    "no_record_lost": check["ok_records"] >= check["ok_2xx"],
                    **{f"grpc_c{c}": compare(found, "direct", "grpc-gateway", c) for c in (1, 16)},
                    **{
                        f"adapter_c{c}": compare(found, "rest-over-http", "rest-over-grpc", c)
                        for c in (1, 16)
                    },
                }
    harness.report(
        "gateway_grpc",
        args.quick,
        {
            "seconds_per_run": seconds,
            "rounds": rounds,
            "tools": ["h2load", "wrk"],
            "summary": summary,
            "runs": rows,
        },
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
