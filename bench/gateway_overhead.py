"""Benchmark 8: what the prediction gateway adds over calling the model server directly.

The model server is MLServer (KServe v2 REST, as OVMS) with two models from
``devstack/modelserver``: ``adder``, which costs almost nothing (so only the gateway's own
cost shows), and ``mlp``, a dense network costing about 3 ms of CPU a call (a small real
model). The gateway runs as it ships (gunicorn, ``gateway/gunicorn_conf.py``), recording
every prediction to a JSON-lines file sink. Load: Debian's ``wrk`` (keep-alive), the same
KServe v2 body to the same model, alternating direct and gateway runs so both see the same
machine.

Scenarios:
- ``shared``: model server, gateway and wrk share both cores (the gateway's CPU is taken
  from the model server's);
- ``pinned``: the model server on CPU 0, the gateway on CPU 1 (as when the gateway has its
  own CPU budget, e.g. its own container limit), wrk unpinned.

After the runs the file sink must hold one record per 2xx the gateway answered (none lost).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml

from bench import harness
from devstack.modelserver import ModelServer
from gateway import gunicorn_command
from tests.support.helpers import free_port, http_ok, wait_for

BODIES = {
    "adder": json.dumps(
        {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}
    ),
    "mlp": json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": [0.5] * 64}]}),
}
BODY = BODIES["adder"]
PATH = "/v2/models/adder/versions/1/infer"


def infer_path(model: str) -> str:
    return f"/v2/models/{model}/versions/1/infer"


LUA = """
wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
"""


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    raw = harness.run_wrk(url, script, connections, seconds)
    ok = raw["requests"] - raw["non2xx"]
    return {
        "connections": connections,
        "requests": raw["requests"],
        "ok_2xx": ok,
        "errors": raw["non2xx"] + raw["errors"],
        "req_per_s": round(ok / (raw["duration_us"] / 1e6), 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


def write_config(workdir: Path, model_url: str) -> Path:
    config = {
        "minio": {"endpoint": "127.0.0.1:9", "bucket_name": "unused"},
        "gateway": {
            "model_service": {"url": model_url},
            "reporting": {
                "spill_dir": str(workdir / "spill"),
                "sinks": [{"type": "file", "path": str(workdir / "predictions.jsonl"), "max_bytes": 1 << 30}],
            },
        },
    }
    path = workdir / "sync-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def records(path: Path) -> int:
    return sum(1 for _ in path.open("rb")) if path.exists() else 0


def measure(
    workdir: Path, scenario: str, model: str, seconds: float, rounds: int
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    run_dir = workdir / f"{scenario}-{model}"
    run_dir.mkdir()
    pinned = scenario == "pinned"
    server = ModelServer(run_dir / "mlserver.log", cpus={0} if pinned else None).start()
    port = free_port()
    env = harness.clean_env(
        CONFIG_PATH=str(write_config(run_dir, server.url)), MODELSYNC_GATEWAY_BIND=f"127.0.0.1:{port}"
    )
    command = gunicorn_command()
    gateway = harness.Proc(
        ["taskset", "-c", "1", *command] if pinned else command, env, run_dir / "gateway.log"
    )
    rows: list[dict[str, Any]] = []
    path = run_dir / "predictions.jsonl"
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, what="gateway")
        script = run_dir / "infer.lua"
        script.write_text(LUA % BODIES[model] + harness.WRK_REPORT)
        targets = {
            "direct": server.url + infer_path(model),
            "gateway": f"http://127.0.0.1:{port}{infer_path(model)}",
        }
        for url in targets.values():
            wrk(url, script, 16, 2)  # warm-up: connections, imports, caches
        warm = records(path)
        for connections in (1, 16):
            for round_ in range(rounds):
                for name, url in targets.items():
                    row = {"scenario": scenario, "model": model, "target": name, "round": round_}
                    row.update(wrk(url, script, connections, seconds))
                    rows.append(row)
                    print(f"[gateway] {row}", flush=True)
        ok = sum(r["ok_2xx"] for r in rows if r["target"] == "gateway")
        # wrk stops with requests in flight: those may add records after its count.
        wait_for(lambda: records(path) - warm >= ok, 30, what="every record")
        time.sleep(0.5)
        check = {"ok_2xx": ok, "records": records(path) - warm}
    finally:
        gateway.stop()
        server.stop()
    return rows, check


def summarise(rows: list[dict[str, Any]], connections: int) -> dict[str, Any]:
    pick = [r for r in rows if r["connections"] == connections]
    direct = [r for r in pick if r["target"] == "direct"]
    through = [r for r in pick if r["target"] == "gateway"]
    d50 = harness.median([r["p50_ms"] for r in direct])
    g50 = harness.median([r["p50_ms"] for r in through])
    d99 = harness.median([r["p99_ms"] for r in direct])
    g99 = harness.median([r["p99_ms"] for r in through])
    dps = harness.median([r["req_per_s"] for r in direct])
    gps = harness.median([r["req_per_s"] for r in through])
    return {
        "direct_p50_ms": d50,
        "gateway_p50_ms": g50,
        "added_p50_ms": round(g50 - d50, 3),
        "direct_p99_ms": d99,
        "gateway_p99_ms": g99,
        "added_p99_ms": round(g99 - d99, 3),
        "direct_req_per_s": dps,
        "gateway_req_per_s": gps,
        "throughput_ratio": round(gps / dps, 3),
        "goal_added_p50_1_5ms": g50 - d50 <= 1.5,
        "goal_added_p99_5ms": g99 - d99 <= 5,
        "goal_ratio_0_8": gps / dps >= 0.8,
    }


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    seconds, rounds = (4.0, 1) if args.quick else (10.0, 3)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with harness.workspace("gateway") as workdir:
        for scenario in ("shared", "pinned"):
            for model in ("adder", "mlp"):
                found, check = measure(workdir, scenario, model, seconds, rounds)
                rows += found
                summary[f"{scenario}/{model}"] = {
                    "records_for_2xx": check,
                    "no_record_lost": check["records"] >= check["ok_2xx"],
                    "c1": summarise(found, 1),
                    "c16": summarise(found, 16),
                }
    harness.report(
        "gateway_overhead",
        args.quick,
        {"seconds_per_run": seconds, "rounds": rounds, "tool": "wrk", "summary": summary, "runs": rows},
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
