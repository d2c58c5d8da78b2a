"""When a version without a manifest counts as complete: quiet for ``settle_seconds``."""

from __future__ import annotations

import math

from agent.pending import Pending, settled
from agent.storage import RemoteObject

SETTLE = 2.0
WALL = 1_800_000_000.0  # the wall clock the bucket's timestamps compare with


def listing(*files: tuple[str, str, float]) -> dict[str, RemoteObject]:
    return {path: RemoteObject(f"m/1/{path}", etag, 10, modified) for path, etag, modified in files}


def test_a_fresh_event_waits_the_settle_time() -> None:
    pending = Pending("m", 1, last_change=100.0)  # the event arrived at monotonic 100
    files = listing(("a.bin", "e1", WALL))  # landed just now
    assert not settled(pending, files, SETTLE, now=100.0, wall_now=WALL)
    assert pending.due == 102.0
    assert settled(pending, files, SETTLE, now=102.0, wall_now=WALL + 2)


def test_a_change_in_the_listing_restarts_the_wait() -> None:
    pending = Pending("m", 1, last_change=100.0)
    assert not settled(pending, listing(("a.bin", "e1", WALL)), SETTLE, now=100.0, wall_now=WALL)
    grown = listing(("a.bin", "e1", WALL), ("b.bin", "e2", WALL + 1.5))
    assert not settled(pending, grown, SETTLE, now=101.5, wall_now=WALL + 1.5)
    assert pending.due == 103.5
    assert settled(pending, grown, SETTLE, now=103.5, wall_now=WALL + 3.5)


def test_a_late_resend_of_an_old_upload_publishes_at_once() -> None:
    pending = Pending("m", 1, last_change=100.0)
    old = listing(("a.bin", "e1", WALL - 3600))
    assert settled(pending, old, SETTLE, now=100.0, wall_now=WALL)


def test_found_by_the_reconcile_uses_the_bucket_clock() -> None:
    recent = Pending("m", 1, last_change=-math.inf)
    assert not settled(recent, listing(("a.bin", "e1", WALL - 0.5)), SETTLE, now=50.0, wall_now=WALL)
    assert recent.due <= 50.0 + SETTLE
    old = Pending("m", 2, last_change=-math.inf)
    assert settled(old, listing(("a.bin", "e1", WALL - 60)), SETTLE, now=50.0, wall_now=WALL)


def test_whole_second_timestamps_do_not_shorten_the_wait() -> None:
    # Landed at WALL + 0.9, listed as WALL: without the one-second allowance the version
    # would look 1.9 s old at WALL + 1.9 and be published before it was quiet for 2 s.
    pending = Pending("m", 1, last_change=-math.inf)
    assert not settled(pending, listing(("a.bin", "e1", WALL)), SETTLE, now=10.0, wall_now=WALL + 1.9)


def test_a_server_clock_ahead_delays_by_the_settle_time_only() -> None:
    pending = Pending("m", 1, last_change=100.0)
    skewed = listing(("a.bin", "e1", WALL + 600))  # the server's clock runs 10 minutes ahead
    assert not settled(pending, skewed, SETTLE, now=100.0, wall_now=WALL)
    assert pending.due == 102.0
    assert settled(pending, skewed, SETTLE, now=102.0, wall_now=WALL + 2)


def test_an_event_drops_the_reconciles_listing_and_is_due_after_the_debounce() -> None:
    pending = Pending("m", 1, last_change=-math.inf)
    pending.differs(listing(("a.bin", "e1", WALL)), now=50.0, forced=True)
    assert pending.due == 50.0 and pending.forced
    pending.event("id-1", now=60.0, debounce=0.5)
    assert pending.take_listing() is None, "the listing predates the event: list again"
    assert pending.due == 50.0, "already due: an event never delays a version"
    assert pending.last_change == 60.0 and pending.intents == {"id-1"}
    pending.differs(listing(), now=70.0, forced=False)
    assert pending.forced, "a resync stays forced until the version is done"
    assert pending.take_listing() == {} and pending.take_listing() is None, "used once"


def test_a_retry_looks_at_the_bucket_again() -> None:
    pending = Pending("m", 1, last_change=0.0)
    pending.differs(listing(("a.bin", "e1", WALL)), now=1.0, forced=False)
    pending.retry_at(9.0)
    assert pending.due == 9.0 and pending.take_listing() is None
