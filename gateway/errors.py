"""Every exception the gateway raises on purpose (flat, as in rq)."""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: an error the gateway expected and can describe."""


class ModelServiceUnavailable(GatewayError):
    """The model server could not be reached, or did not answer in time: nothing to pass on."""

    def __init__(self, message: str, *, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class SinkError(GatewayError):
    """A sink did not take a batch; the reporter spills it and tries again later.

    ``undelivered``: the lines that did not arrive, when the sink knows (the others did);
    None means none of the batch arrived.
    """

    def __init__(self, message: str, undelivered: list[bytes] | None = None) -> None:
        super().__init__(message)
        self.undelivered = undelivered


class SpillError(GatewayError):
    """The spill directory cannot be written: the one case where a record can be dropped."""
