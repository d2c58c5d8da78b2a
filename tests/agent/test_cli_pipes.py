"""The agent's command line when its reader goes away early (``python -m agent status | head
-1``): no traceback, exit status 141 (128 + SIGPIPE, what a shell reports for a filter that
SIGPIPE ended), as real processes writing into real pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.support import ROOT
from tests.support.processes import child_env
from tests.support.s3 import Bucket
from tests.support.volume import Volume

PIPE_CLOSED = 141


def big_status(volume: Volume) -> None:
    """A status document whose table is far larger than a pipe's buffer (64 KiB)."""
    version = {"state": "published", "files": 1, "bytes": 10, "published_at": 1.0}
    models = {f"model-{i:05d}": {"versions": {"1": version}} for i in range(3000)}
    volume.status.parent.mkdir(parents=True, exist_ok=True)
    volume.status.write_text(json.dumps({"models": models}))


def user_env(volume: Volume) -> dict[str, str]:
    """As a person's shell runs it: stdout block-buffered (the tests' children are unbuffered),
    so some of the output reaches the pipe only at Python's flush on exit."""
    env = child_env(volume)
    del env["PYTHONUNBUFFERED"]
    return env


def into_a_closed_pipe(volume: Volume, *args: str) -> subprocess.CompletedProcess[str]:
    """The command's stdout is a pipe whose reader is already gone: its first write fails."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "agent", *args],
            env=user_env(volume),
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    finally:
        os.close(write_end)


def assert_quiet(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == PIPE_CLOSED, (result.returncode, result.stderr)
    for noise in ("Traceback", "BrokenPipeError", "Exception ignored"):
        assert noise not in result.stderr, result.stderr


def test_status_into_head_stops_quietly(volume: Volume) -> None:
    big_status(volume)
    for args in (("status",), ("status", "--json")):
        with subprocess.Popen(
            [sys.executable, "-m", "agent", *args],
            env=user_env(volume),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline()  # as `head -1`: one line, then the reader is gone
            proc.stdout.close()
            stderr = proc.stderr.read()
            code = proc.wait(timeout=60)
        assert first.strip(), args
        assert_quiet(subprocess.CompletedProcess(proc.args, code, "", stderr))


@pytest.mark.parametrize(
    "args",
    [
        ("status",),
        ("status", "--json"),
        ("health",),
        ("resync", "--wait", "0"),
        ("--help",),
        ("status", "--help"),
    ],
    ids=lambda a: " ".join(a),
)
def test_every_command_into_a_closed_pipe_stops_quietly(
    args: tuple[str, ...], volume: Volume, bucket: Bucket
) -> None:
    big_status(volume)
    assert_quiet(into_a_closed_pipe(volume, *args))
