"""Every exception the gateway raises on purpose (flat, as in rq)."""

from __future__ import annotations


class GatewayError(Exception):
    """Base class: an error the gateway expected and can describe."""


class ModelServiceUnavailable(GatewayError):
    """The model server could not be reached, or did not answer in time: nothing to pass on."""

    def __init__(
        self, message: str, *, timed_out: bool = False, sent: bool = True, bad_answer: bool = False
    ) -> None:
        super().__init__(message)
        self.timed_out = timed_out
        self.sent = sent  # False: the request never left, so sending it again is safe
        self.bad_answer = bad_answer  # it answered, but nothing the gateway can pass on

    @property
    def status(self) -> int:
        """What the gateway answers its client instead."""
        if self.bad_answer:
            return 502
        return 504 if self.timed_out else 503


class SinkError(GatewayError):
    """A sink did not take a batch; the reporter spills it and tries again later.

    ``undelivered``: the lines to try again, when the sink knows (the others arrived or are in
    ``rejected``); None means none of the batch arrived, except the rejected ones.
    ``rejected``: lines the sink refused for good (too large, a 4xx): trying again is pointless.
    """

    def __init__(
        self, message: str, undelivered: list[bytes] | None = None, rejected: list[bytes] | None = None
    ) -> None:
        super().__init__(message)
        self.undelivered = undelivered
        self.rejected: list[bytes] = rejected or []


class SpillError(GatewayError):
    """The spill directory cannot be written: the one case where a record can be dropped."""
