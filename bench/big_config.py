"""Benchmark 7: one model's change with 1,000 models in config.json.

1,000 models (one 64-byte file each; 200 with --quick) are synced, so ``config.json`` lists
them all. Then, one at a time, a new model is uploaded and its event posted; inotify (in the
driver) stamps the moment its version directory is renamed into place (its files are ready)
and the moment ``config.json`` is renamed over. The gap is the measure. Baseline in the same
run: the same gap with 10 models in ``config.json``.
"""

from __future__ import annotations

import threading
import time
import warnings
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from bench import harness

warnings.filterwarnings("ignore", category=RuntimeWarning, module="watchdog")


class Stamps(FileSystemEventHandler):
    def __init__(self, models: Path) -> None:
        self.models = models
        self.config = str(models / "config.json")
        self.ready: dict[str, float] = {}
        self.swaps: list[float] = []
        self.lock = threading.Lock()

    def on_moved(self, event: FileSystemEvent) -> None:
        now = time.monotonic()
        dest = str(event.dest_path)
        with self.lock:
            if dest == self.config:
                self.swaps.append(now)
            elif event.is_directory and Path(dest).name == "1":
                self.ready[Path(dest).parent.name] = now


def measure(s3: harness.S3, workdir: Path, models: int, trials: int) -> dict[str, Any]:
    bucket = s3.bucket(f"cfg{models}")
    s3.put_many(bucket, {f"base{m:04d}/1/model.bin": b"x" * 64 for m in range(models)})
    stack = harness.Stack(s3, bucket, workdir / f"n{models}")
    gaps: list[float] = []
    try:
        stack.start_agent()
        harness.wait_for(lambda: len(stack.served()) == models, 600, 0.1, "initial sync")
        stack.start_webhook()
        stamps = Stamps(stack.models)
        observer = Observer()
        observer.schedule(stamps, str(stack.models), recursive=True)
        observer.start()
        time.sleep(1)
        for i in range(trials):
            name = f"new{i:03d}"
            etag = s3.put(bucket, f"{name}/1/model.bin", b"y" * 64)
            swaps_before = len(stamps.swaps)
            stack.post_event(f"{name}/1/model.bin", etag, 64)
            harness.wait_for(lambda n=name: n in stack.served(), 30, 0.005, f"{name} served")  # type: ignore[misc]
            harness.wait_for(
                lambda n=name, b=swaps_before: n in stamps.ready and len(stamps.swaps) > b, 5, 0.005
            )  # type: ignore[misc]
            with stamps.lock:
                swap = next(t for t in stamps.swaps[swaps_before:] if t >= stamps.ready[name])
                gaps.append(swap - stamps.ready[name])
            time.sleep(0.3)
        observer.stop()
        observer.join(5)
        size = stack.ovms_config.stat().st_size
    finally:
        stack.stop()
    return {
        "models_in_config": models + trials,
        "config_bytes": size,
        "ready_to_swap_seconds": harness.summary(gaps),
    }


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    big, trials = (200, 10) if args.quick else (1000, 20)
    with harness.workspace("bigconfig") as workdir:
        s3 = harness.S3(workdir)
        try:
            small_result = measure(s3, workdir, 10, trials)
            print(f"[big_config] 10 models: {small_result}", flush=True)
            big_result = measure(s3, workdir, big, trials)
            print(f"[big_config] {big} models: {big_result}", flush=True)
        finally:
            s3.stop()
    p50 = big_result["ready_to_swap_seconds"]["p50"]
    data = {
        "baseline_10_models": small_result,
        f"with_{big}_models": big_result,
        "ratio_p50_big_to_small": round(p50 / small_result["ready_to_swap_seconds"]["p50"], 2),
        "goals_met": {
            "p50_le_50ms": p50 <= 0.05,
            "max_le_50ms": big_result["ready_to_swap_seconds"]["max"] <= 0.05,
        },
    }
    harness.report("big_config", args.quick, data)


if __name__ == "__main__":
    main()
