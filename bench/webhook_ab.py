"""A/B of webhook source trees: the same gunicorn settings, interleaved rounds, one report.

    python -m bench.webhook_ab base=/tmp/base new=. --connections 1,16 --rounds 4
    python -m bench.webhook_ab new4=.:4 new8=.:8        # a tree at another thread count

Every tree (a git worktree or a patched copy; ``:N`` sets threads per worker, default 8) runs
the webhook under this tree's Python, beside bare Flask (``bench/bare_app.py``) at the same
layout. Per round each server gets ``wrk`` in turn at each concurrency; the report gives,
per variant, the median rate, CPU and context switches per request, and the median of the
per-round ratios to bare Flask. This is how the experiments in BENCHMARKS.md's webhook
section ("measured and not kept") were compared; ``bench.webhook_throughput`` is the goal
benchmark.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import tests.support.processes as child_processes
from bench import harness
from bench.webhook_throughput import BARE_APP, WEBHOOK_APP, _NoS3, lua_script, tree_cpu_seconds
from tests.support.processes import gunicorn_pids

WORKDIR = Path("/tmp/modelsync-webhook-ab")


@dataclass
class Sample:
    rate: float
    cpu_ms: float
    p50_ms: float
    p99_ms: float
    voluntary: float
    involuntary: float


def context_switches(pid: int) -> tuple[int, int]:
    voluntary = involuntary = 0
    for child in gunicorn_pids(pid):
        for task in Path(f"/proc/{child}/task").glob("*"):
            try:
                lines = (task / "status").read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                if line.startswith("voluntary_ctxt_switches"):
                    voluntary += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    involuntary += int(line.split()[1])
    return voluntary, involuntary


class Server:
    def __init__(self, name: str, tree: Path, threads: int, app: str) -> None:
        child_processes.ROOT = tree  # gunicorn runs from that tree's root, so imports its code
        self.name = name
        self.threads = threads
        self.stack = harness.Stack(_NoS3(), "bench-events", WORKDIR / name)
        try:
            self.stack.start_webhook(2, threads, app)
        except BaseException:  # one that never answered /healthz is still running
            self.stack.stop()
            raise
        self.script = lua_script(WORKDIR / name / "events.lua", self.stack.bucket)
        self.url = f"http://127.0.0.1:{self.stack.webhook_port}/minio/events"
        harness.run_wrk(self.url, self.script, 16, 1)

    def run(self, connections: int, seconds: float) -> Sample:
        assert self.stack.webhook is not None
        pid = self.stack.webhook.pid
        cpu0, switches0 = tree_cpu_seconds(pid), context_switches(pid)
        raw = harness.run_wrk(self.url, self.script, connections, seconds)
        cpu, switches = tree_cpu_seconds(pid) - cpu0, context_switches(pid)
        requests = max(1, raw["requests"])
        return Sample(
            rate=(raw["requests"] - raw["non2xx"]) / (raw["duration_us"] / 1e6),
            cpu_ms=1000 * cpu / requests,
            p50_ms=raw["p50_us"] / 1000,
            p99_ms=raw["p99_us"] / 1000,
            voluntary=(switches[0] - switches0[0]) / requests,
            involuntary=(switches[1] - switches0[1]) / requests,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("variants", nargs="+", help="NAME=TREE[:THREADS]")
    parser.add_argument("--connections", default="1,16")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(parents=True)
    specs = {}
    for variant in args.variants:
        name, _, rest = variant.partition("=")
        tree, _, threads = rest.partition(":")
        specs[name] = (Path(tree).resolve(), int(threads or 8))
    layouts = sorted({threads for _, threads in specs.values()})
    own_tree = Path(__file__).resolve().parent.parent
    connections = [int(c) for c in args.connections.split(",")]
    servers: list[Server] = []
    try:  # appended one by one: a server that fails to start stops the ones already up
        for t in layouts:
            servers.append(Server(f"bare{t}", own_tree, t, BARE_APP))
        for name, (tree, threads) in specs.items():
            servers.append(Server(name, tree, threads, WEBHOOK_APP))
        results = run_rounds(servers, connections, args.rounds, args.seconds)
    finally:
        for server in servers:
            server.stack.stop()
    print_report(servers, connections, results)


def run_rounds(
    servers: list[Server], connections: list[int], rounds: int, seconds: float
) -> dict[tuple[str, int], list[Sample]]:
    results: dict[tuple[str, int], list[Sample]] = {(s.name, c): [] for s in servers for c in connections}
    for round_no in range(rounds):
        for c in connections:
            order = servers if round_no % 2 == 0 else servers[::-1]
            for server in order:
                results[(server.name, c)].append(server.run(c, seconds))
    return results


def print_report(
    servers: list[Server], connections: list[int], results: dict[tuple[str, int], list[Sample]]
) -> None:
    """Per concurrency and server: medians, and the per-round ratios to bare Flask's layout."""
    for c in connections:
        for server in servers:
            rows = results[(server.name, c)]
            bare = results[(f"bare{server.threads}", c)]
            ratios = [row.rate / base.rate for row, base in zip(rows, bare, strict=True)]
            med = {f: statistics.median(getattr(r, f) for r in rows) for f in Sample.__annotations__}
            print(
                f"c{c:<3} {server.name:10} {med['rate']:7.0f}/s  cpu {med['cpu_ms']:.3f} ms"
                f"  p50 {med['p50_ms']:.2f} p99 {med['p99_ms']:.2f}"
                f"  ratio {statistics.median(ratios):.3f} ({min(ratios):.3f}..{max(ratios):.3f})"
                f"  context switches {med['voluntary']:.1f} + {med['involuntary']:.1f} per request"
            )


if __name__ == "__main__":
    main()
