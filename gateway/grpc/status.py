"""HTTP statuses and gRPC codes, paired as OVMS pairs them.

OVMS turns each of its internal status codes into both an HTTP status (``src/http_server.cpp``)
and a gRPC code (``src/grpc_utils.cpp``); the pairs below are the ones that agree there (for
example ``MODEL_MISSING``: 404 and ``NOT_FOUND``; ``INVALID_SHAPE``: 400 and
``INVALID_ARGUMENT``; ``RESHAPE_ERROR``: 412 and ``FAILED_PRECONDITION``; ``INTERNAL_ERROR``:
500 and ``INTERNAL``; ``SERVER_NOT_READY``: 503, ``*_NOT_LOADED_YET``: ``UNAVAILABLE``). The
gateway's own answers add 413/``RESOURCE_EXHAUSTED`` (too large), 504/``DEADLINE_EXCEEDED``
(no answer in time) and 422 (MLServer's invalid request) to ``INVALID_ARGUMENT``. A status OVMS
does not pair is ``UNKNOWN``, as OVMS answers an unmapped status.
"""

from __future__ import annotations

import grpc

HTTP_TO_GRPC: dict[int, grpc.StatusCode] = {
    200: grpc.StatusCode.OK,
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    412: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    500: grpc.StatusCode.INTERNAL,
    501: grpc.StatusCode.UNIMPLEMENTED,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

GRPC_TO_HTTP: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 412,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


def grpc_code(status: int) -> grpc.StatusCode:
    return HTTP_TO_GRPC.get(status, grpc.StatusCode.UNKNOWN)


def http_status(code: grpc.StatusCode) -> int:
    return GRPC_TO_HTTP.get(code, 500)  # INTERNAL, UNKNOWN, DATA_LOSS, CANCELLED


def code_named(name: str | None) -> grpc.StatusCode | None:
    """The code a model server answered with, kept by name on the way through the predictor."""
    return grpc.StatusCode[name] if name in grpc.StatusCode.__members__ else None


class RpcFailure(Exception):
    """A call the gateway answers with a gRPC error: the code and the text the client gets."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
