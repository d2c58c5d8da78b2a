"""``wrk``, the HTTP load generator: one keep-alive run and its JSON report."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

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
