"""The conditions a benchmark ran under, so that figures from two days can be compared.

Figures on a shared VM move with the load (other processes' CPU), with CPU steal (the
hypervisor giving the core to another guest), with writeback (how much dirty data the kernel
lets pile up before writers are throttled: ``vm.dirty_*``) and with the page cache (free
memory decides what stays cached). ``Sampler`` reads the counters when the benchmark process
starts (``START``, at import) and again when the report is written; the report records both
and the share of CPU time that went to steal, iowait, and work over the run.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
MEMINFO_KEYS = ("MemTotal", "MemFree", "MemAvailable", "Cached", "Dirty", "Writeback")
DIRTY_SYSCTLS = (
    "dirty_ratio",
    "dirty_background_ratio",
    "dirty_bytes",
    "dirty_background_bytes",
    "dirty_expire_centisecs",
    "dirty_writeback_centisecs",
)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpu_ticks(stat: str | None = None) -> dict[str, int]:
    """The aggregate ``cpu`` line of /proc/stat (all cores), in clock ticks per field."""
    for line in (stat if stat is not None else _read("/proc/stat")).splitlines():
        if line.startswith("cpu "):
            values = [int(x) for x in line.split()[1 : 1 + len(CPU_FIELDS)]]
            return dict(zip(CPU_FIELDS, values, strict=False))
    return {}


def cpu_shares(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Per cent of all cores' time between two samples: steal, iowait, busy (not idle/iowait)."""
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in CPU_FIELDS}
    total = sum(delta.values())
    if total <= 0:
        return {}
    busy = total - delta["idle"] - delta["iowait"] - delta["steal"]
    return {
        "steal_pct": round(100 * delta["steal"] / total, 2),
        "iowait_pct": round(100 * delta["iowait"] / total, 2),
        "busy_pct": round(100 * busy / total, 2),
    }


def meminfo_mib(text: str | None = None) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in (text if text is not None else _read("/proc/meminfo")).splitlines():
        key, _, rest = line.partition(":")
        if key in MEMINFO_KEYS and rest.split():
            out[f"{key}_MiB"] = round(int(rest.split()[0]) / 1024, 1)
    return out


def dirty_settings() -> dict[str, int]:
    out = {}
    for name in DIRTY_SYSCTLS:
        with contextlib.suppress(ValueError):
            out[name] = int(_read(f"/proc/sys/vm/{name}").strip())
    return out


def filesystem_of(path: Path, mounts: str | None = None) -> dict[str, Any]:
    """The mount holding ``path`` (longest mount point that is a prefix): device, type, options."""
    resolved = str(path.resolve())
    best: list[str] = []
    for line in (mounts if mounts is not None else _read("/proc/self/mounts")).splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point = fields[1]
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[1] if best else ""):
            best = fields
    info: dict[str, Any] = {"path": resolved}
    if best:
        info.update(device=best[0], mount_point=best[1], type=best[2], options=best[3])
    with contextlib.suppress(OSError):
        vfs = os.statvfs(resolved)
        info["free_GiB"] = round(vfs.f_bavail * vfs.f_frsize / 2**30, 1)
    return info


@dataclass(frozen=True)
class Sample:
    wall: float
    load: tuple[float, float, float]
    cpu: dict[str, int]
    memory: dict[str, float]

    @classmethod
    def now(cls) -> Sample:
        return cls(time.time(), os.getloadavg(), cpu_ticks(), meminfo_mib())


START = Sample.now()


def record(scratch_dir: Path, start: Sample = START) -> dict[str, Any]:
    """What ``harness.report`` stores under ``conditions``."""
    end = Sample.now()
    return {
        "seconds": round(end.wall - start.wall, 1),
        "load_average_at_start": [round(x, 2) for x in start.load],
        "load_average_at_end": [round(x, 2) for x in end.load],
        "cpu_over_run": cpu_shares(start.cpu, end.cpu),
        "memory_at_start": start.memory,
        "memory_at_end": end.memory,
        "vm_dirty": dirty_settings(),
        "scratch_filesystem": filesystem_of(scratch_dir),
    }
