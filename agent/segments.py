"""Reading the webhook's intent log segments (intent version 3, ``modelsync/intentlog.py``).

The agent keeps, per segment, how far it has read; each wake reads the frames added since.
A frame holds a version-1 intent or a version-2 batch, checked like the files of those
versions. A frame that fails its check is recorded in ``failed/`` on its own, and the frames
around it go on. After a restart every segment is read again from its start: the intents
already done are cheap to repeat (an applied version is recognised and committed at once).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from modelsync import intentbatch, intentlog, intents
from modelsync.errors import IntentError
from modelsync.intents import Intent

log = logging.getLogger(__name__)


@dataclass
class Cursor:
    """Where the next frame of one segment starts; ``finished``: its writer is gone and
    every frame it wrote has been read."""

    offset: int = 0
    finished: bool = False
    torn_reported: bool = False


@dataclass(frozen=True)
class BadFrame:
    name: str  # "<segment>@<offset>": what failed/ records it under
    content: str
    reason: str


def read_new(path: Path, cursor: Cursor) -> Iterator[Intent | BadFrame]:
    """The intents of the frames added to ``path`` since ``cursor``, which is moved on."""
    if cursor.finished:
        return
    # Checked before reading: a frame appended after the read would be deleted unread.
    writer_gone = intentlog.finished(path)
    scan = intentlog.read_frames(path, cursor.offset)
    cursor.offset = scan.end
    for frame in scan.frames:
        try:
            documents = _documents(frame.payload)
        except IntentError as exc:
            reason = str(exc)
        except Exception as exc:  # whatever one frame holds, the frames behind it go on
            reason = f"unreadable frame: {type(exc).__name__}: {exc}"
        else:
            yield from documents
            continue
        yield BadFrame(f"{path.name}@{frame.offset}", frame.payload.decode("utf-8", "replace"), reason)
    if writer_gone:
        cursor.finished = True
        if scan.torn and not cursor.torn_reported:
            cursor.torn_reported = True
            # Never acknowledged: the webhook answers only once a frame's write returned, durable.
            log.warning("intent log %s ends in a torn frame at %d (a crash mid-write)", path.name, scan.end)


def _documents(payload: bytes) -> list[Intent]:
    try:
        document: object = json.loads(payload)
    except ValueError as exc:
        raise IntentError(f"unreadable frame: {exc}") from None
    if isinstance(document, dict) and document.get("intent_version") == intentbatch.BATCH_VERSION:
        return intentbatch.parse_batch(document)["intents"]
    return [intents.parse(document)]
