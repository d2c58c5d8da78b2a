"""The status heartbeat writes the document it holds: compact JSON, the heartbeat fresh."""

from __future__ import annotations

import json
import time
from pathlib import Path

from agent.status import StatusReporter


def test_flush_writes_the_whole_document_with_a_fresh_heartbeat(tmp_path: Path) -> None:
    path = tmp_path / "status.json"
    reporter = StatusReporter(path, 2.0)
    reporter.update(pending_intents=3)
    reporter.error("disk full", model="resnet", version=2)
    before = time.time()
    reporter.flush()
    raw = path.read_text()
    written = json.loads(raw)
    assert raw.endswith("}\n") and "\n" not in raw[:-1]  # one compact line, as before
    assert written["heartbeat"] >= before
    expected = reporter.snapshot()
    expected["heartbeat"] = written["heartbeat"]
    assert written == json.loads(json.dumps(expected))
    assert written["pending_intents"] == 3 and written["models"]["resnet"]["last_error"] == "disk full"
    assert not list(tmp_path.glob(".status.json.tmp-*"))  # nothing half-written left behind
