"""Benchmark 6: reconcile at scale against the bare listing of the same bucket, and an idle
agent's CPU.

A bucket of 10,000 objects (500 models x 20 files of 64 bytes; 50 x 20 with --quick) is synced
once by an agent whose timer never fires (``interval`` 3600). Then ``--repeats`` rounds, the two
variants interleaved (the order alternates each round):
  bare       ``minio`` ``list_objects`` of the bucket, recursive, from the driver: the floor
             (the S3 server's listing and the client's XML parsing, nothing else);
  reconcile  one full reconcile of the agent, asked for with a resync intent (what
             ``agent resync`` writes); its duration is the agent's own, the growth of its
             ``modelsync_agent_reconcile_seconds`` histogram's sum (list + compare with the
             disk, nothing queued), read once the resync's result file is there.
The goal is judged on the median of the per-round ratios reconcile / bare. Bytes: the agent's
``downloaded_bytes`` counter and moto's access log (object GETs) over all rounds.
Idle CPU: the agent restarted with the default ``interval: 30`` on the same volume, its user +
system CPU time from ``/proc/<pid>/stat`` over ``--repeats`` windows of 60 s (10 s with
--quick: a window then holds at most one reconcile, so the quick figure is coarse).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from typing import Any

from minio import Minio

from bench import harness
from bench.goals import Goal, Interleaved, interleave
from modelsync.intents import IntentWriter

NAME = "reconcile"
# A sample is 10,000 objects' worth of passes at either size: at 1,000 objects one pass takes
# a few tenths of a second, the size of this machine's minute-to-minute noise, so one pass
# per sample would judge the noise (see bench/notes/perfbench.md).
PASSES_PER_SAMPLE = {True: 10, False: 1}


def by_round(passes: Interleaved, per_round: int) -> Interleaved:
    """Sum consecutive passes of each variant into one sample per round."""
    return Interleaved(
        {
            variant: [sum(values[i : i + per_round]) for i in range(0, len(values), per_round)]
            for variant, values in ((v, passes.values(v)) for v in passes.results)
        }
    )


def upload_and_sync(s3: harness.S3, workdir: Any, models: int, per_model: int) -> tuple[harness.Stack, int]:
    bucket = s3.bucket("rec")
    items = {f"m{m:04d}/1/f{f:02d}.bin": b"x" * 64 for m in range(models) for f in range(per_model)}
    started = time.monotonic()
    s3.put_many(bucket, items, threads=8)
    print(f"[reconcile] uploaded {len(items)} objects in {time.monotonic() - started:.1f}s", flush=True)
    # The agent's own account of each reconcile's duration is read from its metrics (a
    # histogram's sum), once the resync's result is written: no faster heartbeat (that made the
    # agent serialise its status 4 times as often, inside the measured passes), no polling.
    metrics_port = harness.free_port()
    stack = harness.Stack(s3, bucket, workdir / "stack", interval=3600, metrics_port=metrics_port)
    started = time.monotonic()
    stack.start_agent()
    harness.wait_for(lambda: len(stack.served()) == models, 900, 0.2, "initial sync")
    # status.json is written by the heartbeat: wait until it counts every file, or the bytes
    # of the initial sync's last files would be counted as downloaded by the reconciles.
    harness.wait_for(lambda: downloaded(stack) == 64 * len(items), 30, 0.2, "status counters")
    print(f"[reconcile] initial sync: {time.monotonic() - started:.1f}s", flush=True)
    return stack, len(items)


def downloaded(stack: harness.Stack) -> int:
    return int((stack.status().get("counters") or {}).get("downloaded_bytes", 0))


def bare_listing(client: Minio, bucket: str, objects: int) -> float:
    started = time.monotonic()
    listed = sum(1 for _ in client.list_objects(bucket, recursive=True))
    seconds = time.monotonic() - started
    assert listed == objects, (listed, objects)
    return seconds


def reconcile_metric(stack: harness.Stack) -> tuple[float, float]:
    """The agent's ``modelsync_agent_reconcile_seconds`` histogram: (count, sum)."""
    url = f"http://127.0.0.1:{stack.settings['sync']['metrics_port']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    values = dict(re.findall(r"^modelsync_agent_reconcile_seconds_(count|sum) ([0-9.e+-]+)$", text, re.M))
    return float(values["count"]), float(values["sum"])


def agent_reconcile(stack: harness.Stack, writer: IntentWriter) -> float:
    """Ask for one full reconcile (what ``agent resync`` writes) and return the agent's own
    account of its duration (list + compare)."""
    count, total = reconcile_metric(stack)
    intent = writer.new("resync")
    writer.write_all([intent])
    result = stack.models / ".modelsync" / "results" / f"{intent['id']}.json"
    harness.wait_for(result.exists, 120, 0.01, "resync result")
    after, total_after = reconcile_metric(stack)
    assert after == count + 1, (count, after)
    outcome = json.loads(result.read_text())
    assert outcome.get("status") == "applied" and not outcome.get("error"), outcome
    return total_after - total


def idle_cpu(stack: harness.Stack, windows: int, seconds: float) -> list[float]:
    """Per cent of one core the agent uses at the default interval, per window."""
    stack.settings["sync"]["interval"] = 30
    del stack.settings["sync"]["metrics_port"]  # off by default: idle as shipped
    stack.write_settings()
    agent = stack.start_agent()
    time.sleep(5)  # start-up's own reconcile is not idle
    shares = []
    for _ in range(windows):
        cpu0, t0 = harness.cpu_seconds(agent.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, t1 = harness.cpu_seconds(agent.pid), time.monotonic()
        shares.append(100 * (cpu1 - cpu0) / (t1 - t0))
    stack.stop()
    return shares


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    models, per_model = (50, 20) if args.quick else (500, 20)
    idle_seconds = 10 if args.quick else 60
    with harness.workspace(NAME) as workdir:
        s3 = harness.S3(workdir)
        try:
            stack, objects = upload_and_sync(s3, workdir, models, per_model)
            offset = s3.log_offset()
            bytes_before = downloaded(stack)
            # One client for every bare pass, warmed up: the agent's is (its region is known,
            # its connection open), so neither pays a first request's extra round trips.
            client = s3.make_client()
            bare_listing(client, stack.bucket, objects)
            writer = IntentWriter(stack.intents)
            passes = interleave(
                {
                    "bare": lambda: bare_listing(client, stack.bucket, objects),
                    "reconcile": lambda: agent_reconcile(stack, writer),
                },
                args.repeats * PASSES_PER_SAMPLE[args.quick],
            )
            rounds = by_round(passes, PASSES_PER_SAMPLE[args.quick])
            time.sleep(2.5)  # one heartbeat: status.json counts what the last round did
            bytes_read = downloaded(stack) - bytes_before
            gets = sum(s3.gets_since(offset, stack.bucket).values())
            stack.stop()
            idle = idle_cpu(stack, args.repeats, idle_seconds)
        finally:
            s3.stop()
    ratios = rounds.ratios("reconcile", "bare")
    reconcile_s, bare_s = rounds.values("reconcile"), rounds.values("bare")
    per_sample = PASSES_PER_SAMPLE[args.quick]
    size = f"{objects * per_sample:,} objects"
    how = f"each sample {per_sample} passes over {objects:,} objects" if per_sample > 1 else ""
    every = f"over all {len(passes.results['reconcile'])} reconciles"
    goals = [
        Goal(NAME, f"reconcile / bare listing, {size}", tuple(ratios), 1.1, False, note=how),
        Goal(
            NAME, f"bytes downloaded reconciling {size} unchanged", (float(bytes_read),), 0, False, note=every
        ),
        Goal(NAME, "object GETs in moto's access log meanwhile", (float(gets),), 0, False, note=every),
        Goal(NAME, f"reconcile of {size}", tuple(reconcile_s), 2.0, False, "s", how),
        Goal(NAME, "idle agent CPU (interval 30)", tuple(idle), 1.0, False, "%"),
    ]
    data: dict[str, Any] = {
        "objects": objects,
        "repeats": args.repeats,
        "passes_per_sample": PASSES_PER_SAMPLE[args.quick],
        "reconcile_seconds": harness.spread(reconcile_s, 3),
        "bare_list_objects_seconds": harness.spread(bare_s, 3),
        "ratio_reconcile_to_bare_listing": harness.spread(ratios, 3),
        "rounds": {"reconcile": reconcile_s, "bare": bare_s, "ratios": [round(r, 3) for r in ratios]},
        "passes": {v: [round(x, 3) for x in passes.values(v)] for v in passes.results},
        "bytes_downloaded_during_reconciles": bytes_read,
        "object_gets_during_reconciles": gets,
        "idle": {"interval": 30, "window_seconds": idle_seconds, "cpu_percent": [round(x, 2) for x in idle]},
        "goals": [g.as_dict() for g in goals],
    }
    harness.report(NAME, args.quick, data)
    print({k: v for k, v in data.items() if k != "goals"})


if __name__ == "__main__":
    main()
