"""Benchmark 7: one model's change with 1,000 models in config.json.

1,000 models (one 64-byte file each; 200 with --quick) are synced, so ``config.json`` lists
them all. Then, one at a time, a new model is uploaded and its event posted; inotify (in the
driver) stamps the moment its version directory is renamed into place (its files are ready)
and the moment ``config.json`` is renamed over. The gap is the measure. Baseline in the same
run: the same gap with 10 models in ``config.json``. Both volumes are set up first; then
``--repeats`` batches of trials on each, interleaved; a batch's p50 is one sample.
"""

from __future__ import annotations

import functools
import threading
import time
import warnings
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from bench import harness
from bench.goals import Goal, interleave

warnings.filterwarnings("ignore", category=RuntimeWarning, module="watchdog")
NAME = "big_config"


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


class Rig:
    """One bucket of ``models`` models, synced, with the webhook and an inotify observer."""

    def __init__(self, s3: harness.S3, workdir: Path, models: int) -> None:
        self.s3, self.models = s3, models
        self.bucket = s3.bucket(f"cfg{models}")
        s3.put_many(self.bucket, {f"base{m:04d}/1/model.bin": b"x" * 64 for m in range(models)})
        self.stack = harness.Stack(s3, self.bucket, workdir / f"n{models}")
        self.stamps = Stamps(self.stack.models)
        self.observer = Observer()
        self.trials = 0

    def start(self) -> None:
        self.stack.start_agent()
        harness.wait_for(lambda: len(self.stack.served()) == self.models, 600, 0.1, "initial sync")
        self.stack.start_webhook()
        self.observer.schedule(self.stamps, str(self.stack.models), recursive=True)
        self.observer.start()
        time.sleep(1)

    def trial(self) -> float:
        """Upload one new model, post its event; the gap from its files ready to the swap."""
        name = f"new{self.trials:03d}"
        self.trials += 1
        stack, stamps = self.stack, self.stamps
        etag = self.s3.put(self.bucket, f"{name}/1/model.bin", b"y" * 64)
        swaps_before = len(stamps.swaps)
        stack.post_event(f"{name}/1/model.bin", etag, 64)
        harness.wait_for(lambda: name in stack.served(), 30, 0.005, f"{name} served")
        harness.wait_for(lambda: name in stamps.ready and len(stamps.swaps) > swaps_before, 5, 0.005)
        time.sleep(0.3)
        with stamps.lock:
            return (
                next(t for t in stamps.swaps[swaps_before:] if t >= stamps.ready[name]) - stamps.ready[name]
            )

    def batch(self, trials: int) -> list[float]:
        return [self.trial() for _ in range(trials)]

    def stop(self) -> int:
        """Stop everything; the size of config.json at the end."""
        self.observer.stop()
        self.observer.join(5)
        size = self.stack.ovms_config.stat().st_size if self.stack.ovms_config.exists() else 0
        self.stack.stop()
        return size


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    big, trials = (200, 5) if args.quick else (1000, 10)
    with harness.workspace("bigconfig") as workdir:
        s3 = harness.S3(workdir)
        rigs = {"small": Rig(s3, workdir, 10), "big": Rig(s3, workdir, big)}
        try:
            for rig in rigs.values():
                rig.start()
            batches = {k: functools.partial(r.batch, trials) for k, r in rigs.items()}
            rounds = interleave(batches, args.repeats)
        finally:
            sizes = {k: r.stop() for k, r in rigs.items()}
            s3.stop()
    p50 = {k: [harness.median(batch) for batch in rounds.results[k]] for k in rigs}
    worst = [max(batch) for batch in rounds.results["big"]]
    ratios = [b / s for b, s in zip(p50["big"], p50["small"], strict=True)]
    goals = [
        Goal(NAME, f"{big:,} models: files ready to swap, p50", tuple(p50["big"]), 0.05, False, "s"),
        Goal(NAME, f"{big:,} models: files ready to swap, max", tuple(worst), 0.05, False, "s"),
    ]
    flat = {k: [x for batch in v for x in batch] for k, v in rounds.results.items()}
    data = {
        "trials_per_batch": trials,
        "repeats": args.repeats,
        "baseline_10_models": {
            "config_bytes": sizes["small"],
            "ready_to_swap_seconds": harness.summary(flat["small"]),
        },
        f"with_{big}_models": {
            "config_bytes": sizes["big"],
            "ready_to_swap_seconds": harness.summary(flat["big"]),
        },
        "batch_p50_seconds": {k: harness.spread(v) for k, v in p50.items()},
        "ratio_p50_big_to_small": harness.spread(ratios, 2),
        "goals": [g.as_dict() for g in goals],
    }
    harness.report(NAME, args.quick, data)
    print({k: v for k, v in data.items() if k != "goals"})


if __name__ == "__main__":
    main()
