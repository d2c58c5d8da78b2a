"""Benchmark 2: webhook throughput with durable intents, against a bare Flask ceiling.

Load: Debian's ``wrk`` (2 threads, keep-alive) with a Lua script cycling through 256 real
MinIO-format bodies (``s3:ObjectCreated:Put``, one record each, distinct keys), at 16 and 64
connections. Every 200 is an intent file fsynced with its directory; after each run the
benchmark checks that the intents directory holds at least as many files as wrk counted 2xx
answers (requests still in flight when wrk stops may add a few) and exactly as many as the
webhook's own ``accepted`` counter.

The ceiling is ``bench/bare_app.py`` (read the body, answer 200 JSON) under the same gunicorn
settings, measured in the same run. wrk shares the 2 cores with gunicorn: both numbers pay
for that equally. Several worker/thread layouts are measured so the choice in
``webhook/gunicorn_conf.py`` rests on numbers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import harness
from tests.support.helpers import minio_event

LUA = """
local bodies = {
%s
}
local reqs = {}
local counter = 0
init = function(args)
  for i, b in ipairs(bodies) do
    reqs[i] = wrk.format("POST", "/minio/events",
      {["Content-Type"] = "application/json", ["Authorization"] = "Bearer %s"}, b)
  end
end
request = function()
  counter = counter + 1
  return reqs[(counter %% #reqs) + 1]
end
"""


def lua_script(path: Path, bucket: str) -> Path:
    bodies = []
    for i in range(256):
        key = f"model{i % 16}/{1 + i // 16}/part-{i:03d}.bin"
        body = json.dumps(minio_event(bucket, key, etag=f"{i:032x}", size=1024 + i))
        assert "]==]" not in body
        bodies.append(f"  [==[{body}]==],")
    path.write_text(LUA % ("\n".join(bodies), harness.TOKEN) + harness.WRK_REPORT)
    return path


def wrk(port: int, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    raw = harness.run_wrk(f"http://127.0.0.1:{port}/minio/events", script, connections, seconds)
    seconds_run = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["non2xx"]
    return {
        "connections": connections,
        "requests": raw["requests"],
        "ok_2xx": ok,
        "non2xx": raw["non2xx"],
        "socket_errors": raw["errors"],
        "req_per_s": round(raw["requests"] / seconds_run, 1),
        "ok_per_s": round(ok / seconds_run, 1),
        "p50_ms": raw["p50_us"] / 1000,
        "p90_ms": raw["p90_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "max_ms": raw["max_us"] / 1000,
    }


def accepted_counter(port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(r"^modelsync_webhook_records_accepted_total ([0-9.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else -1


def count_intents(directory: Path) -> int:
    with os.scandir(directory) as entries:
        return sum(1 for e in entries if e.name.endswith(".json") and not e.name.startswith("."))


def measure(
    workdir: Path, app: str, workers: int, threads: int, connections: list[int], seconds: float, warmup: float
) -> list[dict[str, Any]]:
    """Fresh volume and gunicorn for each layout; one run per concurrency."""
    stack_dir = workdir / f"{'bare' if 'bare' in app else 'webhook'}-{workers}x{threads}"
    # The webhook needs no S3 endpoint: only its configuration names one.
    stack = harness.Stack(_NoS3(), "bench-events", stack_dir)
    rows = []
    try:
        stack.start_webhook(workers, threads, app)
        script = lua_script(stack_dir / "events.lua", stack.bucket)
        if warmup:
            wrk(stack.webhook_port, script, connections[0], warmup)
        for c in connections:
            before = count_intents(stack.intents) if stack.intents.is_dir() else 0
            row = wrk(stack.webhook_port, script, c, seconds)
            row.update(app="bare" if "bare" in app else "webhook", workers=workers, threads=threads)
            if "bare" not in app:
                time.sleep(0.2)  # let requests in flight at wrk's stop finish
                written = count_intents(stack.intents) - before
                row["intents_written"] = written
                row["intents_cover_2xx"] = written >= row["ok_2xx"]
            rows.append(row)
            print(f"[webhook] {row}", flush=True)
        if "bare" not in app:
            # Requests still in flight when wrk stopped may finish between the two reads: on a
            # loaded machine that takes more than the 0.2 s above, so wait for the two to agree.
            deadline = time.monotonic() + 10
            while True:
                total = count_intents(stack.intents)
                accepted = accepted_counter(stack.webhook_port)
                if accepted == total or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            rows.append({"check": "accepted counter == intent files", "accepted": accepted, "files": total})
            assert accepted == total, (accepted, total)
    finally:
        stack.stop()
        shutil.rmtree(stack_dir, ignore_errors=True)
    return rows


class _NoS3:
    endpoint = "http://127.0.0.1:9"


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    seconds, warmup = (4.0, 1.0) if args.quick else (10.0, 2.0)
    layouts = [(2, 8), (2, 4)] if args.quick else [(2, 8), (2, 4), (3, 4), (4, 4), (4, 2)]
    connections = [16, 64]
    rows: list[dict[str, Any]] = []
    with harness.workspace("webhook") as workdir:
        for workers, threads in layouts:
            rows += measure(
                workdir, "bench.bare_app:create_app()", workers, threads, connections, seconds, warmup
            )
            rows += measure(
                workdir, "webhook.app:create_app()", workers, threads, connections, seconds, warmup
            )
    runs = [r for r in rows if "app" in r]
    table = {}
    for r in runs:
        key = f"{r['workers']}x{r['threads']}@c{r['connections']}"
        table.setdefault(key, {})[r["app"]] = r
    summary = {}
    for key, pair in table.items():
        hook, bare = pair.get("webhook"), pair.get("bare")
        if hook and bare:
            summary[key] = {
                "webhook_ok_per_s": hook["ok_per_s"],
                "webhook_p50_ms": hook["p50_ms"],
                "webhook_p99_ms": hook["p99_ms"],
                "bare_req_per_s": bare["req_per_s"],
                "bare_p99_ms": bare["p99_ms"],
                "ratio_to_bare": round(hook["ok_per_s"] / bare["req_per_s"], 3),
                "goal_1500_per_s_p99_25ms": hook["ok_per_s"] >= 1500 and hook["p99_ms"] <= 25,
                "goal_half_of_bare": hook["ok_per_s"] >= 0.5 * bare["req_per_s"],
            }
    harness.report(
        "webhook_throughput",
        args.quick,
        {"seconds_per_run": seconds, "tool": "wrk -t2 --timeout 5s", "summary": summary, "runs": rows},
    )
    for key, row in summary.items():
        print(f"[webhook] {key}: {row}")


if __name__ == "__main__":
    main()
