"""Benchmark 9: 100,000 predictions through the gateway while its sinks go down and come back.

Two sinks at once, each down for part of the run:
- a JSON-lines file sink whose directory (a mount, say) is missing from 10 % to 45 % of the
  requests;
- an HTTP sink (CloudEvents) whose receiver is stopped from 35 % to 75 %.

Load: ``wrk`` in 2-second slices until each phase's share of the requests is answered. The
model server is MLServer's ``adder`` v1 (one output: one record per call). At the end, every
2xx must have its record in the file and at the receiver: 0 lost. Duplicates (at least once:
a batch the receiver took just before it went away may be sent again) are counted. The whole
run is repeated ``--repeats`` times, each on a fresh gateway, receiver and file sink.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from bench import harness
from bench.gateway_overhead import BODIES, LUA, infer_path
from bench.goals import Goal, interleave
from devstack.modelserver import ModelServer
from gateway import gunicorn_command
from tests.support.helpers import free_port, http_ok, wait_for

SLICE_SECONDS = 2
NAME = "reporter_loss"


class Receiver:
    """A CloudEvents endpoint that can be stopped and started again on the same port."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ids: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    receiver.ids.append(self.headers["ce-id"])
                self.send_response(202)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def metric(url: str, name: str) -> float:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+-]+)$", text, re.M))


def file_ids(path: Path) -> list[str]:
    ids: list[str] = []
    for item in sorted(path.parent.glob(path.name + "*")):
        if item.suffix != ".lock":
            ids += [json.loads(line)["predictionId"] for line in item.read_text().splitlines() if line]
    return ids


def gateway_config(workdir: Path, model_url: str, receiver: Receiver, target: Path) -> Path:
    sinks = [
        {"type": "file", "path": str(target), "max_bytes": 8 << 20, "backups": 1000},
        {"type": "http", "url": f"http://127.0.0.1:{receiver.port}/", "timeout_seconds": 2},
    ]
    spill = str(workdir / "spill")
    reporting = {"spill_dir": spill, "queue_size": 2000, "retry_seconds": 0.5, "sinks": sinks}
    # The file needs a minio section; the gateway does not use it.
    config = {
        "minio": {"endpoint": "127.0.0.1:9", "bucket_name": "unused"},
        "gateway": {"model_service": {"url": model_url}, "reporting": reporting},
    }
    path = workdir / "sync-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def load(workdir: Path, url: str, total: int, mount: Path, receiver: Receiver) -> tuple[int, list[Any]]:
    """Phases by answered requests, each a series of wrk runs; the sinks change in between."""
    away = workdir / "mount-away"

    def file_down() -> None:
        mount.rename(away)  # the sink's directory (a mount) disappears

    def file_up() -> None:
        away.rename(mount)

    phases = [
        (0.10, "file up, http up", lambda: (mount.mkdir(), receiver.start())),
        (0.35, "file down, http up", file_down),
        (0.45, "file down, http down", receiver.stop),
        (0.75, "file up, http down", file_up),
        (1.00, "file up, http up", receiver.start),
    ]
    script = workdir / "infer.lua"
    script.write_text(LUA % BODIES["adder"] + harness.WRK_REPORT)
    ok, timeline = 0, []
    for until, label, change in phases:
        change()
        phase_ok = 0
        while ok < until * total:  # short wrk slices until this phase's share is answered
            result = harness.run_wrk(url + infer_path("adder"), script, 16, SLICE_SECONDS)
            ok += result["requests"] - result["non2xx"]
            phase_ok += result["requests"] - result["non2xx"]
        timeline.append({"phase": label, "ok": phase_ok})
        print(f"[reporter] {timeline[-1]}", flush=True)
    return ok, timeline


def one_run(workdir: Path, model_url: str, total: int) -> dict[str, Any]:
    workdir.mkdir(parents=True)
    receiver = Receiver(free_port())
    mount = workdir / "mount"
    target = mount / "predictions.jsonl"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    config = gateway_config(workdir, model_url, receiver, target)
    env = harness.clean_env(CONFIG_PATH=str(config), MODELSYNC_GATEWAY_BIND=f"127.0.0.1:{port}")
    gateway = harness.Proc(gunicorn_command(), env, workdir / "gateway.log")
    try:
        wait_for(lambda: http_ok(url + "/healthz"), 30, what="gateway")
        started = time.monotonic()
        ok, timeline = load(workdir, url, total, mount, receiver)
        load_seconds = time.monotonic() - started
        owed = int(metric(url, "modelsync_gateway_requests_total"))
        wait_for(lambda: len(set(file_ids(target))) >= owed, 300, interval=1, what="file records")
        wait_for(lambda: len(set(receiver.ids)) >= owed, 600, interval=1, what="http records")
        drain_seconds = time.monotonic() - started - load_seconds
        time.sleep(1)
        # wrk stops with requests in flight, which are answered after its count: the
        # gateway's own count of answered calls is the number of records owed.
        answered = int(metric(url, "modelsync_gateway_requests_total"))
        counters = {
            name: metric(url, f"modelsync_gateway_reporter_{name}_total")
            for name in ("sent", "spilled", "replayed", "dropped")
        }
    finally:
        gateway.stop(timeout=60)
        receiver.stop()
    in_file, at_receiver = file_ids(target), list(receiver.ids)
    file_set, http_set = set(in_file), set(at_receiver)
    return {
        "wrk_ok": ok,
        "timeline": timeline,
        "answered_by_gateway": answered,
        "file": {"records": len(in_file), "unique": len(file_set), "lost": answered - len(file_set)},
        "http": {"records": len(at_receiver), "unique": len(http_set), "lost": answered - len(http_set)},
        "same_records_in_both": file_set == http_set,
        "counters": counters,
        "load_seconds": round(load_seconds, 1),
        "drain_seconds_after_load": round(drain_seconds, 1),
        "file_duplicates": len(in_file) - len(file_set),
    }


def main() -> None:
    args = harness.parse_args(__doc__ or "")
    total = 3_000 if args.quick else 100_000
    runs = itertools.count()
    with harness.workspace("reporter") as workdir:
        server = ModelServer(workdir / "mlserver.log").start()
        try:
            rounds = interleave(
                {"run": lambda: one_run(workdir / f"run{next(runs)}", server.url, total)}, args.repeats
            )
        finally:
            server.stop()
    rows = rounds.results["run"]
    lost = tuple(float(r["file"]["lost"] + r["http"]["lost"] + (not r["same_records_in_both"])) for r in rows)
    goals = [
        Goal(NAME, f"{total:,} predictions, sinks down part of the time: records lost", lost, 0, False),
        Goal(
            NAME,
            "file sink: records written twice",
            tuple(float(r["file_duplicates"]) for r in rows),
            0,
            False,
        ),
    ]
    harness.report(
        NAME,
        args.quick,
        {"total": total, "repeats": args.repeats, "runs": rows, "goals": [g.as_dict() for g in goals]},
    )
    print(json.dumps([{k: v for k, v in r.items() if k != "timeline"} for r in rows], indent=2))


if __name__ == "__main__":
    main()
