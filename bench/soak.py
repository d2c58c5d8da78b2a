"""The long fault-injection runs: SIGKILL rounds of the agent, SIGKILLs of the webhook under
traffic, and hypothesis fuzzing of the webhook. Same code as the tests, bigger sizes.

    python -m bench.soak                                   # defaults, about 10 minutes at most
    python -m bench.soak --crash-rounds 300 --webhook-rounds 40 --fuzz-examples 5000
    python -m bench.soak --only crash --max-seconds 120 --seed 7

Each phase stops after its round count or when the time budget is spent, whichever comes
first, and the whole run is bounded by ``--max-seconds``. Figures go to stdout and to
``bench/results/soak.json``; the exit code is non-zero if anything was lost or broken.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from minio import Minio

from tests.support.crash import CrashRig
from tests.support.helpers import wait_for
from tests.support.intents import intent_files
from tests.support.processes import Process, Webhook, child_env, launch_webhook
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, Bucket, S3Server
from tests.support.volume import Volume, base_settings
from tests.support.webhookfaults import fuzz_webhook, kill_during_traffic

RESULTS = Path(__file__).resolve().parent / "results"


class Stack:
    """One bucket and one models volume, with the start functions the tests' fixtures give."""

    def __init__(self, s3: S3Server, root: Path) -> None:
        client = Minio(f"127.0.0.1:{s3.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)
        name = f"soak-{secrets.token_hex(4)}"
        client.make_bucket(name)
        self.bucket = Bucket(client, name)
        self.volume = Volume(root, root / "sync-config.yaml")
        self.volume.models.mkdir(parents=True)
        self.volume.settings = base_settings(s3.endpoint, name, self.volume.models)
        self.volume.write()
        self.started: list[Process] = []

    def start_agent(self, wait_ready: bool = True, **env: str) -> Process:
        log_path = self.volume.root / f"agent-{len(self.started)}.log"
        proc = Process([sys.executable, "-m", "agent", "run"], child_env(self.volume, **env), log_path)
        self.started.append(proc)
        if wait_ready:
            wait_for(lambda: self.volume.ovms_config.exists() or not proc.alive(), 20, what="agent start")
        return proc

    def start_webhook(self, **env: str) -> Webhook:
        webhook = launch_webhook(self.volume, self.volume.root / f"webhook-{len(self.started)}.log", **env)
        self.started.append(webhook.proc)
        return webhook

    def close(self) -> None:
        for proc in self.started:
            if proc.alive():
                proc.stop()


@contextmanager
def stack(s3: S3Server, name: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix=f"modelsync-soak-{name}-") as tmp:
        built = Stack(s3, Path(tmp))
        try:
            yield built
        finally:
            built.close()


def crash_phase(s3: S3Server, rounds: int, seed: int, deadline: float) -> dict[str, Any]:
    with stack(s3, "crash") as built:
        rig = CrashRig(built.bucket, built.volume, built.start_agent, random.Random(seed))
        rig.setup()
        started = time.monotonic()
        while rig.figures.rounds < rounds and time.monotonic() < deadline:
            rig.round()
        rig.figures.seconds = time.monotonic() - started
        return rig.figures.as_dict()


def webhook_phase(s3: S3Server, rounds: int, seed: int, deadline: float) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    done = 0
    rng = random.Random(seed)
    with stack(s3, "webhook") as built:
        while done < rounds and time.monotonic() < deadline:
            batch = min(5, rounds - done)
            result = kill_during_traffic(built.start_webhook, built.volume, built.bucket, batch, rng=rng)
            for key, value in result.as_dict().items():
                figures[key] = round(figures.get(key, 0) + value, 1)
            done += batch
            for name in intent_files(built.volume.intents):
                (built.volume.intents / name).unlink()  # checked already; keep the directory small
    return figures


def fuzz_phase(s3: S3Server, examples: int, deadline: float) -> dict[str, Any]:
    total: dict[str, Any] = {
        "cases": 0,
        "server_errors": 0,
        "written_outside": 0,
        "seconds": 0.0,
        "statuses": {},
    }
    with stack(s3, "fuzz") as built:
        webhook = built.start_webhook()
        while total["cases"] < examples and time.monotonic() < deadline:
            batch = min(1000, examples - total["cases"])
            figures = fuzz_webhook(webhook, built.volume, built.bucket, batch)  # raises on any 5xx
            total["cases"] += figures.cases
            total["seconds"] = round(total["seconds"] + figures.seconds, 1)
            for status, count in figures.status_counts.items():
                total["statuses"][str(status)] = total["statuses"].get(str(status), 0) + count
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--crash-rounds", type=int, default=200, help="agent SIGKILL rounds (CI: 30)")
    parser.add_argument("--webhook-rounds", type=int, default=30, help="webhook SIGKILL rounds (CI: 4)")
    parser.add_argument("--fuzz-examples", type=int, default=5000, help="hypothesis cases (CI: 300)")
    parser.add_argument("--max-seconds", type=float, default=600, help="bound on the whole run")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", choices=["crash", "webhook", "fuzz"], action="append")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    phases = args.only or ["crash", "webhook", "fuzz"]
    end = time.monotonic() + args.max_seconds
    # Each phase gets its share of what is left, so one slow phase cannot starve the others.
    weights = {"crash": 0.6, "webhook": 0.15, "fuzz": 0.25}
    report: dict[str, Any] = {"seed": seed, "argv": sys.argv[1:], "started_at": time.time()}
    s3 = S3Server()
    s3.start()
    ok = True
    try:
        for i, phase in enumerate(phases):
            left = end - time.monotonic()
            share = weights[phase] / sum(weights[p] for p in phases[i:])
            deadline = time.monotonic() + left * share
            print(f"soak: {phase} (budget {deadline - time.monotonic():.0f}s) ...", flush=True)
            try:
                if phase == "crash":
                    report[phase] = crash_phase(s3, args.crash_rounds, seed, deadline)
                elif phase == "webhook":
                    report[phase] = webhook_phase(s3, args.webhook_rounds, seed, deadline)
                else:
                    report[phase] = fuzz_phase(s3, args.fuzz_examples, deadline)
            except AssertionError as exc:
                ok = False
                report[phase] = {"failed": str(exc)[:2000]}
            print(f"soak: {phase}: {json.dumps(report[phase])}", flush=True)
    finally:
        s3.stop()
    report["ok"] = ok
    RESULTS.mkdir(exist_ok=True)
    buffer = io.StringIO()
    json.dump(report, buffer, indent=2)
    (RESULTS / "soak.json").write_text(buffer.getvalue() + "\n")
    print(f"soak: {'OK' if ok else 'FAILED'} (seed {seed}); figures in {RESULTS / 'soak.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
