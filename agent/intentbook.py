"""The intents taken in and not yet answered: each ends in done/ or failed/ once, then is forgotten."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from agent.inbox import Inbox


@dataclass
class IntentBook:
    inbox: Inbox
    seen: set[str] = field(default_factory=set)  # taken in, waiting on their version

    def commit(self, intent_ids: Iterable[str]) -> None:
        for intent_id in intent_ids:
            self.inbox.done(intent_id)
            self.seen.discard(intent_id)

    def fail(self, intent_id: str, reason: str) -> None:
        self.inbox.fail(intent_id, reason)
        self.seen.discard(intent_id)
