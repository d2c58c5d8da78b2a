"""Pre-flight: open a staged version with the OpenVINO runtime before it is published.

The check runs in a child process (:mod:`agent.preflightchild`) with a time limit and an
address-space limit, so openvino never enters the agent's own memory and a model that hangs,
crashes or needs too much memory is a refusal with its reason, not an agent down.

Which file is the model follows OVMS's own search of a version directory: the first of, in
this order, ``*.xml`` (OpenVINO IR, weights in the ``.bin`` of the same name), ``*.onnx``,
``*.pdmodel`` (PaddlePaddle), ``saved_model.pb`` (TensorFlow SavedModel: the directory),
``*.tflite``, ``*.pb``, at the top of the version directory. A version with none of them (a
MediaPipe graph, a custom loader's files) is not checked and is published as before.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

log = logging.getLogger(__name__)

# (glob, what to open): OVMS's order. "." opens the version directory itself.
_MODEL_PATTERNS = (
    ("*.xml", None),
    ("*.onnx", None),
    ("*.pdmodel", None),
    ("saved_model.pb", "."),
    ("*.tflite", None),
    ("*.pb", None),
)


class PreflightMode(StrEnum):
    OFF = "off"
    READ = "read"  # parse the model and its weights
    COMPILE = "compile"  # also compile it for CPU, as OVMS does when it loads it


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str = ""
    seconds: float = 0.0


def model_file(directory: Path) -> Path | None:
    """The file (or directory) OVMS would load from this version directory, if any."""
    for pattern, opens in _MODEL_PATTERNS:
        found = sorted(p for p in directory.glob(pattern) if p.is_file())
        if found:
            return directory if opens == "." else found[0]
    return None


def available() -> bool:
    """Whether openvino is installed, without importing it (the agent's memory stays small)."""
    return importlib.util.find_spec("openvino") is not None


class Preflight:
    def __init__(self, mode: PreflightMode, timeout: float, memory_mb: int) -> None:
        self.mode = mode
        self.timeout = timeout
        self.memory = memory_mb * 2**20

    @classmethod
    def configured(cls, mode: str, timeout: float, memory_mb: int) -> Preflight | None:
        """The pre-flight the configuration asks for, or None (off, or openvino missing)."""
        chosen = PreflightMode(mode)
        if chosen is PreflightMode.OFF:
            return None
        if not available():
            log.warning(
                "sync.preflight is %s but openvino is not installed (pip install 'modelsync[preflight]'):"
                " versions are published without a pre-flight",
                chosen.value,
            )
            return None
        log.info("pre-flight: %s, %.0fs and %d MiB per version", chosen.value, timeout, memory_mb)
        return cls(chosen, timeout, memory_mb)

    def check(self, model: str, version: int, directory: Path) -> Verdict:
        target = model_file(directory)
        if target is None:
            log.info("model %s:%s: no file OpenVINO reads; published without a pre-flight", model, version)
            return Verdict(True)
        started = time.monotonic()
        verdict = self._run(target)
        # The staging directory's name means nothing to a reader: name the version instead.
        reason = verdict.reason.replace(str(directory), f"{model}/{version}")
        verdict = Verdict(verdict.ok, reason, time.monotonic() - started)
        log.info(
            "model %s:%s pre-flight (%s) %s in %.2fs%s",
            model,
            version,
            self.mode.value,
            "passed" if verdict.ok else "REFUSED",
            verdict.seconds,
            "" if verdict.ok else f": {verdict.reason}",
            extra={"model": model, "version": version, "event": "preflight"},
        )
        return verdict

    def _run(self, target: Path) -> Verdict:
        args = [sys.executable, "-m", "agent.preflightchild", self.mode.value, str(target), str(self.memory)]
        try:
            done = subprocess.run(args, capture_output=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:  # run() has killed the child (SIGKILL) and reaped it
            return Verdict(False, f"pre-flight did not finish within {self.timeout:g}s (killed)")
        lines = done.stdout.decode(errors="replace").strip().splitlines()
        if done.returncode == 0 and lines:
            try:
                answer = json.loads(lines[-1])
                return Verdict(bool(answer["ok"]), str(answer.get("error", "")))
            except (ValueError, KeyError, TypeError):
                pass
        return Verdict(False, _crash_reason(done.returncode, done.stderr))


def _crash_reason(code: int, stderr: bytes) -> str:
    try:
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited {code}"
    except ValueError:
        how = f"killed by signal {-code}"
    tail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    if code == -signal.SIGKILL:  # nobody but the kernel's OOM killer sends it to our child
        how += ", likely out of memory: the container's memory limit must hold the model in the pre-flight"
    return f"pre-flight crashed ({how}): {tail[0][:300]}"
