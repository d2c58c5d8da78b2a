"""A version that may differ from the bucket, and when its upload has gone quiet."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from agent.storage import RemoteObject

Listing = dict[str, RemoteObject]  # path inside the version -> object
Signature = frozenset[tuple[str, str, int]]


def signature(listing: Listing) -> Signature:
    return frozenset((p, o.etag, o.size) for p, o in listing.items())


@dataclass
class Pending:
    """A version that may differ from the bucket, with what is known of its upload."""

    model: str
    version: int
    last_change: float  # monotonic time of the last sign of upload activity
    due: float = math.inf
    forced: bool = False  # a resync: no settle wait
    intents: set[str] = field(default_factory=set)
    signature: Signature | None = None
    attempts: int = 0
    changes: int = 0  # objects that changed between the listing and their download, in a row
    listing: Listing | None = None  # from a reconcile, used once instead of re-listing
    waiting_for: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, int]:
        return (self.model, self.version)

    def event(self, intent_id: str, now: float, debounce: float) -> None:
        """An intent about this version arrived: list it again after ``debounce`` seconds."""
        self.listing = None  # a reconcile's listing predates this event
        self.intents.add(intent_id)
        self.last_change = max(self.last_change, now)
        self.due = min(self.due, now + debounce)

    def differs(self, listing: Listing, now: float, forced: bool) -> None:
        """A reconcile found the bucket's ``listing`` differs from the disk: due now, with it."""
        self.listing, self.due = listing, now
        self.forced = self.forced or forced

    def take_listing(self) -> Listing | None:
        """The listing a reconcile left, used once (None: list the version again)."""
        listing, self.listing = self.listing, None
        return listing

    def retry_at(self, due: float) -> None:
        """Look at the bucket again at ``due`` (monotonic), not with an old listing."""
        self.listing = None
        self.due = due


def settled(pending: Pending, listing: Listing, settle: float, now: float, wall_now: float) -> bool:
    """True once the version has been quiet for ``settle`` seconds; else sets ``pending.due``.

    Quiet means: no event (``last_change`` is moved by each intent), no change in the listing
    between two looks, and on the first look the bucket's own clock says the newest object
    landed long enough ago (an event may be a late re-send of something long finished).
    ``now`` is monotonic, ``wall_now`` the wall clock the bucket's timestamps compare with.
    """
    sig = signature(listing)
    if pending.signature is None:
        # +1 s: listings may truncate to whole seconds (moto does). A server clock ahead of
        # ours counts as "just now": a skewed server delays a version by the settle time at
        # most, never by the skew.
        newest = max(o.last_modified for o in listing.values()) + 1.0
        landed = now - max(0.0, wall_now - newest)
        pending.last_change = landed if math.isinf(pending.last_change) else min(pending.last_change, landed)
    elif sig != pending.signature:
        pending.last_change = now
    pending.signature = sig
    quiet_until = pending.last_change + settle
    if now >= quiet_until:
        return True
    pending.due = quiet_until
    return False
