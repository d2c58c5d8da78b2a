"""Benchmark 1: upload-to-served latency, event-driven vs polling.

Latency: from ``put_object`` of the model's last file returning to the version directory being
in place (``<model>/1/model.bin``) and the model being in ``config.json``. Every upload is a new
model (``latNNN/1``) so that every upload needs a ``config.json`` swap.

Modes, each on its own bucket and agent, all in one run:
  a. event-driven with a manifest (``metadata.json`` uploaded first, then the 10 MB model.bin)
  b. event-driven without a manifest: the agent waits for ``sync.settle_seconds`` (default 2 s)
  c. polling only, ``sync.interval: 30`` (the original sidecar's default); no webhook
  d. polling only, ``sync.interval: 1``; no webhook
The polling modes upload the same files as (a). moto sends no notifications, so in (a) and (b)
the driver POSTs the MinIO-format event to the webhook right after each ``put_object`` returns,
as MinIO does; that POST is inside the measured time. (a) and (b) upload one model at a time;
(c) and (d) upload at random times (mean spacing such that the uploads cover two reconcile
intervals), each measured on its own, since a polling agent's latency depends only on where an
upload falls in its reconcile cycle. The four modes are run ``--repeats`` times, interleaved,
each run on a fresh bucket and agent; each goal is judged on the median of the runs' p50 (p95).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import harness
from bench.goals import Goal, Interleaved, interleave

NAME = "latency"
MODEL_BYTES = 10 * 1024 * 1024
POLL = 0.002


def served_now(stack: harness.Stack, model: str) -> bool:
    if not (stack.models / model / "1" / "model.bin").exists():
        return False
    return model in stack.served()


def upload(stack: harness.Stack, model: str, data: bytes, manifest: bool, events: bool) -> float:
    """Upload one model version; return the monotonic time the last ``put_object`` returned."""
    if manifest:
        meta = json.dumps({"files": {"model.bin": len(data)}}).encode()
        etag = stack.s3.put(stack.bucket, f"{model}/1/metadata.json", meta)
        if events:
            stack.post_event(f"{model}/1/metadata.json", etag, len(meta))
    etag = stack.s3.put(stack.bucket, f"{model}/1/model.bin", data)
    t0 = time.monotonic()
    if events:
        status = stack.post_event(f"{model}/1/model.bin", etag, len(data))
        assert status == 200, status
    return t0


def sequential(stack: harness.Stack, n: int, data: bytes, manifest: bool, tag: str) -> list[float]:
    latencies = []
    for i in range(n):
        model = f"{tag}{i:03d}"
        t0 = upload(stack, model, data, manifest, events=True)
        harness.wait_for(lambda m=model: served_now(stack, m), 60, POLL, f"{model} served")  # type: ignore[misc]
        latencies.append(time.monotonic() - t0)
    return latencies


def staggered(
    stack: harness.Stack, n: int, data: bytes, interval: float, tag: str, seed: int, cycles: int
) -> list[float]:
    rng = random.Random(seed)
    mean_gap = max(1.0, cycles * interval / n)
    started: dict[str, float] = {}
    lock = threading.Lock()

    def uploader() -> None:
        for i in range(n):
            time.sleep(mean_gap * rng.uniform(0.5, 1.5))
            model = f"{tag}{i:03d}"
            t0 = upload(stack, model, data, manifest=True, events=False)
            with lock:
                started[model] = t0

    thread = threading.Thread(target=uploader, daemon=True)
    thread.start()
    latencies: dict[str, float] = {}
    deadline = time.monotonic() + n * mean_gap * 1.5 + interval * 2 + 60
    while len(latencies) < n and time.monotonic() < deadline:
        with lock:
            waiting = [m for m in started if m not in latencies]
        if waiting and any((stack.models / m / "1" / "model.bin").exists() for m in waiting):
            now = time.monotonic()
            served = stack.served()
            for model in waiting:
                if model in served and (stack.models / model / "1" / "model.bin").exists():
                    latencies[model] = now - started[model]
        time.sleep(POLL)
    thread.join(timeout=5)
    if len(latencies) < n:
        raise TimeoutError(f"{tag}: only {len(latencies)} of {n} uploads were served")
    return [latencies[m] for m in sorted(latencies)]


def run_mode(
    s3: harness.S3, workdir: Path, mode: str, n: int, data: bytes, cycles: int
) -> tuple[list[float], dict[str, Any]]:
    bucket = s3.bucket(f"lat-{mode}")
    interval = {"c": 30.0, "d": 1.0}.get(mode, 30.0)
    stack = harness.Stack(s3, bucket, workdir / mode, interval=interval)
    try:
        stack.start_agent()
        if mode in ("a", "b"):
            stack.start_webhook()
            latencies = sequential(stack, n, data, manifest=(mode == "a"), tag=f"lat{mode}")
        else:
            latencies = staggered(stack, n, data, interval, f"lat{mode}", ord(mode), cycles)
        swaps = stack.status().get("config", {}).get("swaps")
    finally:
        stack.stop()
    settings = {"interval": interval, "settle_seconds": 2.0, "manifest": mode != "b", "webhook": mode in "ab"}
    return latencies, {"settings": settings, "config_swaps": swaps}


LABELS = {
    "a": "(a) event + manifest",
    "b": "(b) event + settle (2 s)",
    "c": "(c) polling, interval 30",
    "d": "(d) polling, interval 1",
}


def plot(results: dict[str, list[float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mode, values in results.items():
        ordered = sorted(values)
        ys = [(i + 1) / len(ordered) for i in range(len(ordered))]
        ax1.step(ordered, ys, where="post", label=f"{LABELS[mode]} (n={len(values)})")
    ax1.set_xscale("log")
    ax1.set_xlabel("upload-to-served latency (s, log scale)")
    ax1.set_ylabel("fraction of uploads served")
    ax1.axvline(0.25, color="grey", linestyle=":", linewidth=1)
    ax1.text(0.25, 0.02, " 250 ms goal", color="grey", fontsize=8)
    ax1.grid(True, which="both", alpha=0.3)
    ax1.legend(fontsize=8, loc="upper left")
    ax1.set_title("cumulative distribution")
    data = [results[m] for m in results]
    ax2.boxplot(data, whis=(5, 95), showfliers=True)
    ax2.set_xticks(range(1, len(results) + 1), [LABELS[m].split(" ", 1)[1] for m in results], fontsize=8)
    ax2.set_yscale("log")
    ax2.set_ylabel("latency (s, log scale)")
    ax2.set_title("box: p25-p75, whiskers p5-p95")
    ax2.grid(True, which="both", axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def goals_of(rounds: Interleaved) -> list[Goal]:
    """BENCHMARKS.md #1a and #1, judged on the median over the repeats of each one's p50/p95."""

    def pct(mode: str, p: float) -> list[float]:
        return [harness.percentile(run, p) for run in rounds.results[mode]]

    return [
        Goal(NAME, "(a) event + manifest, p50", tuple(pct("a", 50)), 0.25, False, "s"),
        Goal(NAME, "(a) event + manifest, p95", tuple(pct("a", 95)), 1.0, False, "s"),
        Goal(
            NAME,
            "(a) faster than (c) polling interval 30, at p50",
            tuple(c / a for c, a in zip(pct("c", 50), pct("a", 50), strict=True)),
            50,
            unit="x",
        ),
    ]


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    # Per repeat; --quick makes each run shorter (fewer uploads, (c) over one cycle), not fewer.
    counts = {"a": 5, "b": 3, "c": 4, "d": 4} if args.quick else {"a": 20, "b": 15, "c": 15, "d": 15}
    cycles = 1 if args.quick else 2
    data = harness.random_bytes(MODEL_BYTES)
    runs = itertools.count()
    details: dict[str, list[dict[str, Any]]] = {m: [] for m in LABELS}

    def variant(mode: str) -> Callable[[], list[float]]:
        def run() -> list[float]:
            n = next(runs)
            print(f"[latency] run {n}, mode {mode}: {counts[mode]} uploads", flush=True)
            latencies, info = run_mode(s3, workdir / f"r{n}", mode, counts[mode], data, cycles)
            details[mode].append({**info, "seconds": harness.summary(latencies)})
            print(f"[latency] {LABELS[mode]}: {details[mode][-1]['seconds']}", flush=True)
            return latencies

        return run

    with harness.workspace(NAME) as workdir:
        s3 = harness.S3(workdir)
        try:
            rounds = interleave({m: variant(m) for m in ("a", "b", "d", "c")}, args.repeats)
        finally:
            s3.stop()
    goals = goals_of(rounds)
    results = {m: [x for run in rounds.results[m] for x in run] for m in LABELS}
    p50 = {m: [harness.percentile(run, 50) for run in rounds.results[m]] for m in LABELS}
    ratios = {
        f"{m}_over_a_p50": harness.spread([x / a for x, a in zip(p50[m], p50["a"], strict=True)], 1)
        for m in ("b", "c", "d")
    }
    out = harness.report(
        NAME,
        args.quick,
        {
            "model_bytes": MODEL_BYTES,
            "repeats": args.repeats,
            "uploads_per_run": counts,
            "modes": {m: {"label": LABELS[m], "runs": details[m]} for m in LABELS},
            "p50_seconds": {m: harness.spread(v) for m, v in p50.items()},
            "ratios": ratios,
            "raw_seconds": {m: [[round(x, 4) for x in run] for run in rounds.results[m]] for m in LABELS},
            "goals": [g.as_dict() for g in goals],
        },
    )
    png = harness.ROOT / "docs" / "latency.png" if not args.quick else out.with_suffix(".png")
    if importlib.util.find_spec("matplotlib") is None:  # the figures are in the report already
        print("[latency] no plot: matplotlib is in the bench extra (pip install -e '.[bench]')")
        return
    machine = harness.machine()
    plot(
        results,
        png,
        f"modelsync upload-to-served latency, 10 MiB model, moto S3; {machine['cores']} cores "
        f"({machine['cpu']}), {time.strftime('%Y-%m-%d')}",
    )
    print(f"[latency] plot {png}; ratios {ratios}")


if __name__ == "__main__":
    main()
