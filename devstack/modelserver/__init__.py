"""A real KServe v2 REST model server (MLServer), for the tests and for `make run`.

``ModelServer`` runs ``mlserver start devstack/modelserver`` in a subprocess of this interpreter, on free
loopback ports, and waits until the server and every expected model version answer ready.

Models served (see ``runtime.py`` and the ``*/model-settings.json`` files beside this one):

* ``adder`` v1: ``x`` FP32 [N, K] -> ``sum`` FP32 [N] (row sums)
* ``adder`` v2: ``x`` FP32 [N, K] -> ``sum`` FP32 [N] (row sums * 2), ``count`` INT64 [N] (K)
* ``slow`` v1: sleeps request ``parameters.sleep_ms`` ms, echoes its first input as ``y``
* ``failing`` v1: predict raises (HTTP 500, plain-text body ``Internal Server Error``)
* ``mlp`` v1: ``x`` FP32 [N, 64] -> ``scores`` FP32 [N, 10], a dense network costing real CPU
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

MODEL_DIR = Path(__file__).resolve().parent
DEFAULT_MODELS: tuple[tuple[str, str | None], ...] = (
    ("adder", "1"),
    ("adder", "2"),
    ("slow", "1"),
    ("failing", "1"),
    ("mlp", "1"),
)
# `python -m mlserver` does not exist and `-m mlserver.cli.main` warns (runpy); call the console entry.
_LAUNCH = "import sys; sys.argv[0] = 'mlserver'; from mlserver.cli import main; main()"


def free_ports(count: int = 1, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct ports that were free a moment ago (all held open while choosing)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


class ModelServerError(RuntimeError):
    pass


class ModelServer:
    """MLServer in a subprocess; use as a context manager or call ``start()`` / ``stop()``."""

    def __init__(
        self,
        log_path: str | os.PathLike[str],
        *,
        model_dir: str | os.PathLike[str] = MODEL_DIR,
        models: Sequence[tuple[str, str | None]] = DEFAULT_MODELS,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        port: int = 0,
        grpc_port: int = 0,
        cpus: set[int] | None = None,
    ) -> None:
        self.log_path = Path(log_path)
        self.model_dir = Path(model_dir).resolve()
        self.models = tuple(models)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.requested_port = port  # 0: any free port
        self.requested_grpc_port = grpc_port
        self.cpus = cpus  # pin the server (and its threads) to these CPUs, for benchmarks
        self.port = 0
        self.grpc_port = 0
        self.metrics_port = 0
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._workdir: str | None = None

    @property
    def url(self) -> str:
        if not self.port:
            raise ModelServerError("ModelServer not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        if not self.grpc_port:
            raise ModelServerError("ModelServer not started")
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _pin(self) -> None:
        os.sched_setaffinity(0, self.cpus or set())

    def _env(self) -> dict[str, str]:
        # Drop inherited MLSERVER_* (MLSERVER_MODEL_* would apply to *every* model's settings).
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLSERVER_")}
        env.update(
            {
                "MLSERVER_HTTP_PORT": str(self.port),
                "MLSERVER_GRPC_PORT": str(self.grpc_port),  # gRPC cannot be turned off
                "MLSERVER_METRICS_PORT": str(self.metrics_port),  # unused: settings.json disables metrics
                "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ in the model dir
                # One BLAS thread: a model's cost is then the same whether or not the server is pinned.
                "OPENBLAS_NUM_THREADS": "1",
                "OMP_NUM_THREADS": "1",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self) -> ModelServer:
        if self.alive():
            raise ModelServerError("ModelServer already running")
        http_port, grpc_port, self.metrics_port = free_ports(3)
        self.port = self.requested_port or http_port
        self.grpc_port = self.requested_grpc_port or grpc_port
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        # MLServer reads `.env` from, and adds, its cwd to sys.path: give it an empty private one.
        self._workdir = tempfile.mkdtemp(prefix="mlserver-cwd-")
        started = time.monotonic()
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _LAUNCH, "start", str(self.model_dir)],
            cwd=self._workdir,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: stop() reaps any workers too
            preexec_fn=self._pin if self.cpus else None,
        )
        try:
            self._wait_ready(started + self.startup_timeout)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _ready_paths(self) -> list[str]:
        paths = ["/v2/health/ready"]  # 200 even before any model loaded: also check each model
        for name, version in self.models:
            base = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
            paths.append(base + "/ready")
        return paths

    def _wait_ready(self, deadline: float) -> None:
        pending = self._ready_paths()
        with requests.Session() as http:
            while pending:
                if not self.alive():
                    code = self._proc.returncode if self._proc is not None else None
                    raise ModelServerError(f"mlserver exited with {code} during startup\n{self.log_tail()}")
                with contextlib.suppress(requests.RequestException):
                    pending = [p for p in pending if http.get(self.url + p, timeout=2).status_code != 200]
                if not pending:
                    return
                if time.monotonic() >= deadline:
                    raise ModelServerError(
                        f"mlserver not ready in {self.startup_timeout}s; pending {pending}\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> int | None:
        """SIGTERM the server's process group, wait, then SIGKILL; returns the exit code."""
        proc, self._proc = self._proc, None
        code: int | None = None
        if proc is not None:
            if proc.poll() is None:
                self._signal_group(proc, signal.SIGTERM)
                try:
                    proc.wait(timeout=self.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._signal_group(proc, signal.SIGKILL)
                    proc.wait(timeout=self.stop_timeout)
            # Leader gone: kill anything left in its process group (workers when parallel_workers > 0).
            self._signal_group(proc, signal.SIGKILL)
            code = proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        return code

    @staticmethod
    def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)  # pgid == pid thanks to start_new_session

    def __enter__(self) -> ModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
