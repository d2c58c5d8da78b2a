"""modelsync.results: outcomes typed in memory, the same results file on disk."""

from __future__ import annotations

import json
from pathlib import Path

from modelsync.results import ResultBox, ResyncOutcome, ResyncStatus, VersionOutcome


def written(tmp_path: Path, outcome: ResyncOutcome) -> bytes:
    box = ResultBox(tmp_path)
    box.write(outcome)
    raw = (tmp_path / f"{outcome.id}.json").read_bytes()
    document = json.loads(raw)
    assert isinstance(document.pop("finished_at"), float)
    return json.dumps(document).encode()


def test_a_resync_that_synced_everything_is_applied(tmp_path: Path) -> None:
    outcome = ResyncOutcome("1-a", "m", None)
    outcome.record({("m", 1): VersionOutcome.IN_SYNC, ("m", 2): VersionOutcome.PUBLISHED})
    assert outcome.status is ResyncStatus.APPLIED
    assert written(tmp_path, outcome) == (
        b'{"id": "1-a", "model": "m", "version": null, "status": "applied", '
        b'"versions": {"m:1": "in_sync", "m:2": "published"}}'
    )


def test_versions_left_behind_fail_the_resync_and_are_named_in_label_order(tmp_path: Path) -> None:
    outcome = ResyncOutcome("1-b", None, None)
    outcome.record(
        {
            ("m", 10): VersionOutcome.WAITING,
            ("m", 9): VersionOutcome.RETRYING,
            ("m", 8): VersionOutcome.REMOVED,
            ("n", 1): VersionOutcome.FAILED,
            ("n", 2): VersionOutcome.NOT_SYNCED,
            ("n", 3): VersionOutcome.UNCHANGED,
        }
    )
    assert outcome.status is ResyncStatus.FAILED
    assert written(tmp_path, outcome) == (
        b'{"id": "1-b", "model": null, "version": null, "status": "failed", '
        b'"versions": {"m:10": "waiting", "m:9": "retrying", "m:8": "removed", "n:1": "failed", '
        b'"n:2": "not_synced", "n:3": "unchanged"}, "error": "not synced: m:10, m:9, n:1, n:2"}'
    )


def test_a_resync_that_could_not_start_has_no_versions(tmp_path: Path) -> None:
    outcome = ResyncOutcome("1-c", "m", 3)
    outcome.error = "bucket unreachable"
    assert written(tmp_path, outcome) == (
        b'{"id": "1-c", "model": "m", "version": 3, "status": "failed", "error": "bucket unreachable"}'
    )


def test_the_wait_returns_the_file_as_written(tmp_path: Path) -> None:
    box = ResultBox(tmp_path)
    assert box.wait("1-d", 0.0) is None
    outcome = ResyncOutcome("1-d", None, None)
    outcome.record({})
    box.write(outcome)
    found = box.wait("1-d", 5.0)
    assert found is not None
    assert found["status"] == "applied" and found["versions"] == {}


def test_which_outcomes_leave_the_queue_and_which_move_config_json() -> None:
    finished = {o for o in VersionOutcome if o.finished}
    assert VersionOutcome.WAITING not in finished and VersionOutcome.RETRYING not in finished
    assert {o for o in VersionOutcome if o.moved} == {VersionOutcome.PUBLISHED, VersionOutcome.REMOVED}
    assert json.dumps({"state": VersionOutcome.PUBLISHED}) == '{"state": "published"}'
