"""Which names modelsync accepts, in one place: the agent's bucket layout and the gateway's
URLs and Kafka headers read the same model names.

A model name is a directory on the volume and a segment of a URL or object key, so it is
one printable token. A version in the bucket is a positive integer without leading zeros
(OVMS reads the leading digits of a directory name); a version the gateway passes on may be
any short token, since model servers other than OVMS (MLServer) name versions freely.
"""

from __future__ import annotations

import re

# Always used with fullmatch(): `$` would also accept a trailing newline.
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
VERSION = re.compile(r"[1-9][0-9]{0,18}")
SERVED_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# A request id travels to the model server as X-Request-Id: one token of printable ASCII.
REQUEST_ID = re.compile(r"[\x21-\x7e]{1,256}")


def model_problem(model: str, version: str | None) -> str | None:
    """Why a model name and version a client gave cannot be passed on, or None when they can."""
    if not MODEL_NAME.fullmatch(model):
        return f"invalid model name {model[:130]!r}"
    if version is not None and not SERVED_VERSION.fullmatch(version):
        return f"invalid model version {version[:66]!r}"
    return None


def is_request_id(value: str) -> bool:
    return REQUEST_ID.fullmatch(value) is not None
