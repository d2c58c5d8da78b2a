"""The pre-flight child: open one model with the OpenVINO runtime and say whether it loads.

``python -m agent.preflightchild <read|compile> <model path> <address space limit in bytes>``
prints one JSON line, ``{"ok": true}`` or ``{"ok": false, "error": "..."}``, and exits 0. The
limit is set before openvino is imported, so a model that needs more memory fails here (an
exception, or the child dies) and never grows the agent. Run by :mod:`agent.preflight` only.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from typing import Any

# A test hook: the child hangs, so that the parent's time limit is what ends it.
HANG_ENV = "MODELSYNC_PREFLIGHT_TEST_HANG"


def load_runtime(limit: int) -> Any:
    """openvino, or None after saying why (the limit, not the model, is then at fault)."""
    try:
        import openvino  # only ever in this child, after the memory limit
    except (ImportError, MemoryError, OSError) as exc:
        detail = " ".join(str(exc).split())[-200:]
        reason = (
            f"the OpenVINO runtime could not be loaded within the pre-flight's memory limit of "
            f"{limit // 2**20} MiB (sync.preflight_memory_mb): {type(exc).__name__}: …{detail}"
        )
        print(json.dumps({"ok": False, "error": reason}))
        return None
    return openvino


def check(openvino: Any, mode: str, path: str) -> None:
    core = openvino.Core()
    model = core.read_model(path)
    if mode == "compile":
        core.compile_model(model, "CPU")


def main(argv: list[str]) -> int:
    mode, path, limit = argv[0], argv[1], int(argv[2])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if os.environ.get(HANG_ENV):
        time.sleep(3600)
    openvino = load_runtime(limit)
    if openvino is None:
        return 0
    try:
        check(openvino, mode, path)
    except MemoryError:
        print(json.dumps({"ok": False, "error": f"out of memory (limit {limit // 2**20} MiB)"}))
        return 0
    except Exception as exc:  # OpenVINO raises RuntimeError and friends: each is the model's refusal
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())  # one line, for logs and tables
        print(json.dumps({"ok": False, "error": reason}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
