"""Benchmark 5: the agent's memory while it syncs a large model, and at rest.

A model of two 1 GiB files (2 GiB; 2 x 128 MiB with --quick), uploaded multipart, is synced by
a real ``python -m agent run`` after ``python -m agent resync --model big``. Peak RSS is the
kernel's own high-water mark (``VmHWM`` in ``/proc/<pid>/status``), read just before the agent
stops; RSS is also
sampled every 20 ms for the timeline. Idle RSS: after start-up on an empty bucket, and once the
sync is done. Baseline in the same run: the RSS of a bare ``python -c "import minio"``.
"""

from __future__ import annotations

import subprocess
import threading
import time
from typing import Any

from bench import harness
from bench.download import MiB, put_large


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    file_size = 128 * MiB if args.quick else 1024 * MiB
    files = 2
    samples: list[tuple[float, int]] = []
    with harness.workspace("memory") as workdir:
        s3 = harness.S3(workdir)
        try:
            bucket = s3.bucket("mem")
            stack = harness.Stack(s3, bucket, workdir / "stack", interval=3600)
            agent = stack.start_agent()
            time.sleep(3)
            idle_empty = harness.proc_status(agent.pid)
            print(f"[memory] idle on an empty bucket: {idle_empty}", flush=True)
            for i in range(files):
                put_large(s3, bucket, f"big/1/part-{i}.bin", file_size)
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    rss = harness.proc_status(agent.pid).get("VmRSS")
                    if rss:
                        samples.append((time.monotonic(), rss))
                    time.sleep(0.02)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.monotonic()
            # The upload is complete: ask for a resync (what an event would do) and time it.
            resync = [harness.PY, "-m", "agent", "resync", "--model", "big"]
            subprocess.run(resync, env=stack.env(), check=True, capture_output=True)
            harness.wait_for(lambda: "big" in stack.served(), 600, 0.05, "big:1 served")
            sync_seconds = time.monotonic() - started
            time.sleep(5)
            stop.set()
            sampler.join()
            after = harness.proc_status(agent.pid)
            stack.stop()
        finally:
            s3.stop()
    baseline = subprocess.run(
        [
            harness.PY,
            "-c",
            "import minio, urllib3, jsonschema, watchdog, yaml;print(open('/proc/self/status').read())",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    base_rss = next(int(x.split()[1]) for x in baseline.splitlines() if x.startswith("VmRSS:"))
    peak_sampled = max((r for _, r in samples), default=0)
    data: dict[str, Any] = {
        "model_bytes": file_size * files,
        "files": files,
        "sync_seconds": round(sync_seconds, 2),
        "peak_rss_MiB_VmHWM": round(after.get("VmHWM", 0) / 1024, 1),
        "peak_rss_MiB_sampled": round(peak_sampled / 1024, 1),
        "idle_rss_MiB_empty_bucket": round(idle_empty.get("VmRSS", 0) / 1024, 1),
        "idle_rss_MiB_after_sync": round(after.get("VmRSS", 0) / 1024, 1),
        "baseline_rss_MiB_python_with_imports": round(base_rss / 1024, 1),
        "goals_met": {"peak_rss_le_80MB": after.get("VmHWM", 0) / 1024 <= 80},
        "timeline_MiB": [(round(t - samples[0][0], 2), round(r / 1024, 1)) for t, r in samples[::10]]
        if samples
        else [],
    }
    harness.report("memory", args.quick, data)
    print({k: v for k, v in data.items() if k != "timeline_MiB"})


if __name__ == "__main__":
    main()
