"""SIGTERM and SIGINT as a stop request, for the provider processes that are not gunicorn's
(``python -m gateway kafka|grpc``): the main thread waits on the event and shuts down in order."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

log = logging.getLogger(__name__)


def stop_on_signals(provider: str, then: str) -> threading.Event:
    """An event set by SIGTERM or SIGINT; the log line says what the provider does next."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s provider: %s received; %s", provider, signal.Signals(signum).name, then)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    return stop
