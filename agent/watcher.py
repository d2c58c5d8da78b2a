"""A watchdog observer on the intents directory: it only wakes the agent's loop.

The loop then lists the directory itself, so an event the observer misses (inotify queue
overflow, a file that appeared before the observer started) is picked up all the same.
An intent log segment (``modelsync/intentlog.py``) wakes it on every write, and when its
writer closes it (the webhook process ended: the segment is finished).
"""

from __future__ import annotations

import threading
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from modelsync.intentlog import SEGMENT_SUFFIX


class _WakeOnIntent(FileSystemEventHandler):
    def __init__(self, wake: threading.Event) -> None:
        self.wake = wake

    def _maybe_wake(self, path: str | bytes) -> None:
        name = Path(path if isinstance(path, str) else path.decode()).name
        if name.endswith((".json", SEGMENT_SUFFIX)) and not name.startswith("."):
            self.wake.set()

    def _maybe_wake_segment(self, path: str | bytes) -> None:
        if (path if isinstance(path, str) else path.decode()).endswith(SEGMENT_SUFFIX):
            self._maybe_wake(path)

    def on_modified(self, event: FileSystemEvent) -> None:
        self._maybe_wake_segment(event.src_path)

    def on_closed(self, event: FileSystemEvent) -> None:
        self._maybe_wake_segment(event.src_path)

    def on_created(self, event: FileSystemEvent) -> None:
        self._maybe_wake(event.src_path)

    def on_moved(self, event: FileSystemEvent) -> None:
        self._maybe_wake(event.dest_path)


class IntentWatcher:
    def __init__(self, directory: Path, wake: threading.Event) -> None:
        self.observer = Observer()
        self.observer.daemon = True
        self.observer.schedule(_WakeOnIntent(wake), str(directory), recursive=False)

    def start(self) -> None:
        self.observer.start()

    def stop(self) -> None:
        self.observer.stop()
        self.observer.join(timeout=5)
