"""What every benchmark shares: an S3 endpoint, the webhook and the agent as real processes,
data generation, timing helpers and the JSON report.

The S3 endpoint is moto's server in a process of its own (``python -m moto.server``), so it
does not share the benchmark driver's GIL. It is a Python server: where it is the bottleneck,
the benchmark says so and compares against the ``minio`` client on the same server.

Nothing here is a test: benchmarks are run by hand (``make bench``, ``python -m bench.<name>``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import http.client
import io
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml
from minio import Minio

from tests.support.helpers import free_port, minio_event, wait_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
ACCESS_KEY = "bench-access"
SECRET_KEY = "bench-secret-key"
TOKEN = "bench-webhook-token"
PY = sys.executable


# -- small helpers: the tests' own (free_port, wait_for) are re-exported for the scripts -------


# wrk's Lua ``done`` hook, appended to a benchmark's own script: one JSON line to parse.
WRK_REPORT = """
done = function(summary, latency, requests)
  io.write(string.format(
    'JSON:{"requests":%d,"duration_us":%d,"non2xx":%d,"errors":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d}\\n',
    summary.requests, summary.duration, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def run_wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    """One keep-alive ``wrk`` run of ``script`` (ending in ``WRK_REPORT``); its JSON report."""
    args = ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{int(seconds)}s", "--timeout", "5s"]
    out = subprocess.run(
        [*args, "-s", str(script), url], capture_output=True, text=True, check=True, timeout=seconds + 60
    ).stdout
    return wrk_report(out)


def wrk_report(stdout: str) -> dict[str, Any]:
    """The JSON line ``WRK_REPORT`` printed."""
    report: dict[str, Any] = json.loads(next(x for x in stdout.splitlines() if x.startswith("JSON:"))[5:])
    return report


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float], digits: int = 4) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), digits),
        "p95": round(percentile(values, 95), digits),
        "p99": round(percentile(values, 99), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "mean": round(sum(values) / len(values), digits),
    }


def median(values: list[float]) -> float:
    return percentile(values, 50)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "mem_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def report(name: str, quick: bool, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>[-quick].json`` and print a one-line digest."""
    RESULTS.mkdir(exist_ok=True)
    document = {
        "benchmark": name,
        "quick": quick,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(PY).name, "-m", f"bench.{name}", *sys.argv[1:]]),
        "machine": machine(),
        **data,
    }
    path = RESULTS / f"{name}{'-quick' if quick else ''}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"[{name}] results in {path.relative_to(ROOT)}")
    return path


def scratch(prefix: str) -> Path:
    """A disk-backed temporary directory (``/tmp`` here is on the root file system)."""
    base = os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir()
    return Path(tempfile.mkdtemp(prefix=f"modelsync-bench-{prefix}-", dir=base))


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


# -- processes -------------------------------------------------------------------------------
class Proc:
    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self.handle = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.handle, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=5)
        self.handle.close()
        return self.popen.returncode


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "MODELSYNC_", "PROMETHEUS_"))}
    env.update(PYTHONUNBUFFERED="1", AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY, **extra)
    return env


class S3:
    """moto's server in its own process; its access log counts the GETs per key."""

    GET_LINE = re.compile(r'"GET /([^/?\s]+)/([^?\s]+)(\?[^\s]*)? HTTP/1\.[01]" (\d+)')

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.log_path = workdir / "moto.log"
        self.proc = Proc(
            [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)], clean_env(), self.log_path
        )
        wait_for(self._up, 30, 0.05, "moto server")
        self.client = self.make_client()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _up(self) -> bool:
        if not self.proc.alive():
            raise RuntimeError(f"moto server exited:\n{self.log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def make_client(self) -> Minio:
        return Minio(f"127.0.0.1:{self.port}", access_key=ACCESS_KEY, secret_key=SECRET_KEY, secure=False)

    def bucket(self, prefix: str = "bench") -> str:
        name = f"{prefix}-{secrets.token_hex(4)}"
        self.client.make_bucket(name)
        return name

    def put(self, bucket: str, key: str, data: bytes) -> str:
        result = self.client.put_object(bucket, key, io.BytesIO(data), len(data))
        return str(result.etag).strip('"')

    def put_many(self, bucket: str, items: dict[str, bytes], threads: int = 8) -> None:
        client = self.make_client()
        with ThreadPoolExecutor(threads) as pool:
            list(
                pool.map(
                    lambda kv: client.put_object(bucket, kv[0], io.BytesIO(kv[1]), len(kv[1])), items.items()
                )
            )

    def log_offset(self) -> int:
        return self.log_path.stat().st_size

    def gets_since(self, offset: int, bucket: str) -> dict[str, int]:
        """Object GETs (not listings) answered 2xx since ``offset`` of the access log, per key."""
        counts: dict[str, int] = {}
        with open(self.log_path, "rb") as handle:
            handle.seek(offset)
            for raw in handle:
                match = self.GET_LINE.search(raw.decode("utf-8", "replace"))
                if match and match.group(1) == bucket and match.group(4).startswith("2"):
                    counts[match.group(2)] = counts.get(match.group(2), 0) + 1
        return counts

    def stop(self) -> None:
        self.proc.stop()


class Stack:
    """One bucket's models volume, with the agent and (optionally) the webhook."""

    def __init__(self, s3: S3, bucket: str, workdir: Path, **sync: Any) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.root = workdir
        self.models = workdir / "models"
        self.models.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "sync-config.yaml"
        self.settings: dict[str, Any] = {
            "minio": {
                "endpoint": s3.endpoint,
                "access_key": ACCESS_KEY,
                "secret_key": SECRET_KEY,
                "bucket_name": bucket,
                "secure": False,
            },
            # preflight off: the benches upload random bytes, and the RSS floor is measured without it
            "sync": {
                "interval": 30,
                "models_path": str(self.models),
                "log_level": "INFO",
                "preflight": "off",
                **sync,
            },
            "ovms": {"config_path": str(self.models / "config.json")},
            "webhook": {"auth_token": TOKEN},
        }
        self.config_path.write_text(yaml.safe_dump(self.settings))
        self.agent: Proc | None = None
        self.webhook: Proc | None = None
        self.webhook_port = 0
        self._conn: http.client.HTTPConnection | None = None

    @property
    def ovms_config(self) -> Path:
        return self.models / "config.json"

    @property
    def status_path(self) -> Path:
        return self.models / ".modelsync" / "status.json"

    @property
    def intents(self) -> Path:
        return self.models / ".modelsync" / "intents"

    def env(self, **extra: str) -> dict[str, str]:
        return clean_env(CONFIG_PATH=str(self.config_path), **extra)

    def start_agent(self, timeout: float = 60) -> Proc:
        self.agent = Proc([PY, "-m", "agent", "run"], self.env(), self.root / "agent.log")
        agent = self.agent
        wait_for(lambda: self.ovms_config.exists() or not agent.alive(), timeout, 0.02, "agent start")
        if not agent.alive():
            raise RuntimeError(f"agent exited:\n{(self.root / 'agent.log').read_text()}")
        return agent

    def start_webhook(
        self, workers: int | None = None, threads: int | None = None, app: str | None = None
    ) -> Proc:
        self.webhook_port = free_port()
        extra = {"MODELSYNC_WEBHOOK_BIND": f"127.0.0.1:{self.webhook_port}"}
        if workers is not None:
            extra["MODELSYNC_WEBHOOK_WORKERS"] = str(workers)
        if threads is not None:
            extra["MODELSYNC_WEBHOOK_THREADS"] = str(threads)
        args = [PY, "-m", "gunicorn", "-c", "python:webhook.gunicorn_conf", app or "webhook.app:create_app()"]
        self.webhook = Proc(args, self.env(**extra), self.root / f"webhook-{self.webhook_port}.log")
        wait_for(self._webhook_up, 30, 0.05, "webhook start")
        return self.webhook

    def _webhook_up(self) -> bool:
        assert self.webhook is not None
        if not self.webhook.alive():
            raise RuntimeError(f"webhook exited:\n{self.webhook.log_path.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.webhook_port, timeout=1)
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False

    def post_event(self, key: str, etag: str | None = None, size: int | None = None) -> int:
        """What MinIO does right after a PUT: POST its event (keep-alive connection)."""
        body = json.dumps(minio_event(self.bucket, key, etag=etag, size=size)).encode()
        headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
        for _attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self.webhook_port, timeout=10)
            try:
                self._conn.request("POST", "/minio/events", body, headers)
                response = self._conn.getresponse()
                response.read()
                return response.status
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
        raise RuntimeError("webhook does not answer")

    def status(self) -> dict[str, Any]:
        for _ in range(20):
            try:
                return dict(json.loads(self.status_path.read_bytes()))
            except (OSError, ValueError):
                time.sleep(0.01)
        return {}

    def served(self) -> dict[str, Any]:
        try:
            document = json.loads(self.ovms_config.read_bytes())
        except (OSError, ValueError):
            return {}
        return {item["config"]["name"]: item["config"] for item in document.get("model_config_list", [])}

    def stop(self) -> None:
        if self._conn is not None:
            self._conn.close()
        for proc in (self.webhook, self.agent):
            if proc is not None:
                proc.stop()


@contextlib.contextmanager
def workspace(prefix: str, keep: bool = False) -> Iterator[Path]:
    path = scratch(prefix)
    try:
        yield path
    finally:
        if not keep and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(path, ignore_errors=True)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM (peak RSS) in KiB from /proc/<pid>/status."""
    out = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def parse_args(description: str) -> Any:
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="small sizes (what `make bench` runs)")
    return parser.parse_args()
