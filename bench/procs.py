"""Child processes of a benchmark and what /proc says about them (CPU time, RSS)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.processes import Process

PY = sys.executable
ACCESS_KEY = "bench-access"
SECRET_KEY = "bench-secret-key"


class Proc(Process):
    """The tests' child process, but stopping never fails a benchmark: a child that ignores
    SIGTERM is killed and its exit code returned, the figures already taken stand."""

    @property
    def pid(self) -> int:
        return self.popen.pid

    def stop(self, timeout: float = 15.0) -> int:
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
