"""Benchmark 2: webhook throughput with durable intents, against a bare Flask ceiling.

Load: Debian's ``wrk`` (keep-alive) with a Lua script cycling through 256 real MinIO-format
bodies (``s3:ObjectCreated:Put``, one record each, distinct keys), at 1, 16 and 64
connections. Every 200 is an intent made durable (written synchronously to the webhook's intent log;
concurrent requests share one group commit, ``modelsync/intentbatch.py``). After each run
the benchmark checks that the intents on disk (every frame of the log) are at least as many
as wrk counted 2xx answers (requests in flight at wrk's stop may add a few), and at the end
exactly as many as the webhook's own ``accepted`` counter.

The ceiling is ``bench/bare_app.py`` (read the body, answer 200 JSON) under the same gunicorn
settings. Both servers stay up for the whole benchmark and are measured interleaved (bare,
webhook, webhook, bare, ...) ``repeats`` times, so a noisy minute on this shared machine hits
both; goals are judged on the median of the per-round ratios. Beside the rates, the CPU
seconds per request of each server's process tree: a load-robust measure of the work per event.
"""

from __future__ import annotations

import json
import re
import shutil
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any

from bench import harness
from bench.goals import Goal, interleave, spread_text
from tests.support.helpers import minio_event
from tests.support.intents import documents_on_disk, intents_on_disk, members
from tests.support.processes import gunicorn_pids

BENCH = "webhook_throughput"
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
BARE_APP = "bench.bare_app:create_app()"
WEBHOOK_APP = "webhook.app:create_app()"
NO_WRITE_APP = "bench.nowrite_app:create_app()"


def lua_script(path: Path, bucket: str) -> Path:
    bodies = []
    for i in range(256):
        key = f"model{i % 16}/{1 + i // 16}/part-{i:03d}.bin"
        body = json.dumps(minio_event(bucket, key, etag=f"{i:032x}", size=1024 + i))
        assert "]==]" not in body
        bodies.append(f"  [==[{body}]==],")
    path.write_text(LUA % ("\n".join(bodies), harness.TOKEN) + harness.WRK_REPORT)
    return path


def tree_cpu_seconds(pid: int) -> float:
    total = 0.0
    for child in gunicorn_pids(pid):
        try:
            total += harness.cpu_seconds(child)
        except OSError:  # a worker gone meanwhile
            continue
    return total


def count_intents(directory: Path) -> int:
    """Intents on disk: version-1 files, members of batch files, frames of the intent log.

    Counted, not checked: the log is read whole on every call, and a schema check of each of
    up to 100,000 intents would add seconds per run; ``check_counter`` checks them once.
    """
    return sum(len(members(document)) for document in documents_on_disk(directory))


def accepted_counter(port: int) -> int:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    match = re.search(r"^modelsync_webhook_records_accepted_total ([0-9.e+]+)$", text, re.M)
    return int(float(match.group(1))) if match else -1


@dataclass
class Server:
    """One gunicorn (bare or webhook) kept up for every round."""

    name: str
    stack: harness.Stack
    script: Path

    @property
    def durable(self) -> bool:
        return self.name == "webhook"

    def run(self, connections: int, seconds: float) -> dict[str, Any]:
        assert self.stack.webhook is not None
        port = self.stack.webhook_port
        before = count_intents(self.stack.intents) if self.durable else 0
        cpu0 = tree_cpu_seconds(self.stack.webhook.pid)
        raw = harness.run_wrk(f"http://127.0.0.1:{port}/minio/events", self.script, connections, seconds)
        cpu = tree_cpu_seconds(self.stack.webhook.pid) - cpu0
        seconds_run = raw["duration_us"] / 1e6
        ok = raw["requests"] - raw["non2xx"]
        row: dict[str, Any] = {
            "app": self.name,
            "connections": connections,
            "requests": raw["requests"],
            "ok_2xx": ok,
            "non2xx": raw["non2xx"],
            "socket_errors": raw["errors"],
            "ok_per_s": round(ok / seconds_run, 1),
            "cpu_ms_per_request": round(1000 * cpu / max(1, raw["requests"]), 3),
            "p50_ms": raw["p50_us"] / 1000,
            "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "max_ms": raw["max_us"] / 1000,
        }
        if self.durable:
            time.sleep(0.2)  # requests in flight at wrk's stop finish
            row["intents_written"] = count_intents(self.stack.intents) - before
            row["intents_cover_2xx"] = row["intents_written"] >= ok
            assert row["intents_cover_2xx"], row
        print(f"[webhook] {row}", flush=True)
        return row


def start(workdir: Path, name: str, app: str, workers: int, threads: int, warmup: float) -> Server:
    stack_dir = workdir / f"{name}-{workers}x{threads}"
    # The webhook needs no S3 endpoint: only its configuration names one.
    stack = harness.Stack(_NoS3(), "bench-events", stack_dir)
    stack.start_webhook(workers, threads, app)
    server = Server(name, stack, lua_script(stack_dir / "events.lua", stack.bucket))
    if warmup:
        harness.run_wrk(f"http://127.0.0.1:{stack.webhook_port}/minio/events", server.script, 16, warmup)
    return server


def check_counter(server: Server) -> dict[str, Any]:
    """Requests in flight when wrk stopped may finish between the two reads: wait for agreement."""
    deadline = time.monotonic() + 10
    while True:
        total = count_intents(server.stack.intents)
        accepted = accepted_counter(server.stack.webhook_port)
        if accepted == total or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert accepted == total, (accepted, total)
    assert len(intents_on_disk(server.stack.intents)) == total, "each a valid intent, once"
    return {"check": "accepted counter == intents on disk", "accepted": accepted, "intents": total}


class _NoS3:
    endpoint = "http://127.0.0.1:9"


def measure_layout(
    workdir: Path, workers: int, threads: int, connections: list[int], seconds: float, repeats: int
) -> dict[str, Any]:
    """The three servers up; per round, every concurrency with all three interleaved."""
    bare = start(workdir, "bare", BARE_APP, workers, threads, 1.0)
    hook = start(workdir, "webhook", WEBHOOK_APP, workers, threads, 1.0)
    no_write = start(workdir, "no_write", NO_WRITE_APP, workers, threads, 1.0)
    servers = (bare, hook, no_write)
    try:
        results = {
            c: interleave({s.name: lambda c=c, s=s: s.run(c, seconds) for s in servers}, repeats)
            for c in connections
        }
        check = check_counter(hook)
    finally:
        for server in servers:
            server.stack.stop()
            shutil.rmtree(server.stack.root, ignore_errors=True)
    return {"layout": f"{workers}x{threads}", "results": results, "check": check}


def summarise(measured: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for c, runs in measured["results"].items():
        out[f"c{c}"] = {
            "webhook_ok_per_s": spread_text(runs.values("webhook", lambda r: r["ok_per_s"]), 1),
            "bare_per_s": spread_text(runs.values("bare", lambda r: r["ok_per_s"]), 1),
            "ratio_to_bare": spread_text(runs.ratios("webhook", "bare", lambda r: r["ok_per_s"]), 3),
            "webhook_p50_ms": spread_text(runs.values("webhook", lambda r: r["p50_ms"]), 2),
            "webhook_p99_ms": spread_text(runs.values("webhook", lambda r: r["p99_ms"]), 2),
            "bare_p50_ms": spread_text(runs.values("bare", lambda r: r["p50_ms"]), 2),
            "bare_p99_ms": spread_text(runs.values("bare", lambda r: r["p99_ms"]), 2),
            "webhook_cpu_ms_per_request": spread_text(
                runs.values("webhook", lambda r: r["cpu_ms_per_request"]), 3
            ),
            "bare_cpu_ms_per_request": spread_text(runs.values("bare", lambda r: r["cpu_ms_per_request"]), 3),
            "no_write_ratio_to_bare": spread_text(
                runs.ratios("no_write", "bare", lambda r: r["ok_per_s"]), 3
            ),
            "no_write_cpu_ms_per_request": spread_text(
                runs.values("no_write", lambda r: r["cpu_ms_per_request"]), 3
            ),
        }
    return out


def goals(measured: dict[str, Any]) -> list[Goal]:
    c1, c16 = measured["results"][1], measured["results"][16]
    note = f"layout {measured['layout']}, same gunicorn settings, interleaved"
    no_write = spread_text(c16.ratios("no_write", "bare", lambda r: r["ok_per_s"]))
    cpu = {
        n: median(c16.values(n, lambda r: r["cpu_ms_per_request"])) for n in ("bare", "no_write", "webhook")
    }
    ceiling = (
        f"{note}; the same webhook without its durable write: {no_write} of bare; CPU ms per request:"
        f" bare {cpu['bare']:.3f}, without the write {cpu['no_write']:.3f}, webhook {cpu['webhook']:.3f}"
    )
    return [
        Goal(
            BENCH,
            "c16 events/s / bare Flask",
            tuple(c16.ratios("webhook", "bare", lambda r: r["ok_per_s"])),
            0.5,
            note=ceiling,
        ),
        Goal(BENCH, "c16 p99", tuple(c16.values("webhook", lambda r: r["p99_ms"])), 25, False, " ms", note),
        Goal(
            BENCH,
            "c1 events/s",
            tuple(c1.values("webhook", lambda r: r["ok_per_s"])),
            700,
            unit="/s",
            note=note,
        ),
        Goal(BENCH, "c1 p50", tuple(c1.values("webhook", lambda r: r["p50_ms"])), 1.4, False, " ms", note),
    ]


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install -y wrk")
    # Quick: the chosen layout (webhook/gunicorn_conf.py's 2 workers x 8 threads) only.
    seconds = 3.0 if args.quick else 8.0
    repeats = max(args.repeats, 3 if args.quick else 5)  # --repeats adds rounds, never fewer
    layouts = [(2, 8)] if args.quick else [(2, 8), (2, 4), (4, 4)]
    connections = [1, 16, 64]
    layouts_measured = []
    with harness.workspace("webhook") as workdir:
        for workers, threads in layouts:
            layouts_measured.append(measure_layout(workdir, workers, threads, connections, seconds, repeats))
    chosen = layouts_measured[0]
    summary = {m["layout"]: summarise(m) for m in layouts_measured}
    runs = {m["layout"]: {f"c{c}": r.results for c, r in m["results"].items()} for m in layouts_measured}
    harness.report(
        BENCH,
        args.quick,
        {
            "seconds_per_run": seconds,
            "repeats": repeats,
            "tool": "wrk -t min(2, c) --timeout 5s, keep-alive",
            "summary": summary,
            "checks": [m["check"] for m in layouts_measured],
            "goals": [g.as_dict() for g in goals(chosen)],
            "runs": runs,
        },
    )
    for layout, rows in summary.items():
        for c, row in rows.items():
            print(f"[webhook] {layout} {c}: {row}")


if __name__ == "__main__":
    main()
