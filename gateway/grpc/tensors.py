"""KServe v2 tensor contents: the protobuf forms (typed ``InferTensorContents`` or raw little-endian
bytes) to the flat JSON ``data`` list and back, for every KServe v2 datatype.

Raw contents are decoded with :mod:`struct` (``e`` is IEEE half precision), so FP16 values come out
exactly as numpy's ``float16`` would give them, without numpy. ``BYTES`` elements are raw as a
4-byte little-endian length and the bytes, as Triton and OVMS write them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the REST provider reads binary tensors without loading protobuf
    from gateway.grpc.grpc_predict_v2_pb2 import InferTensorContents

# datatype -> (the typed contents field, the struct format of one raw element)
FORMATS: dict[str, tuple[str | None, str]] = {
    "BOOL": ("bool_contents", "?"),
    "UINT8": ("uint_contents", "B"),
    "UINT16": ("uint_contents", "H"),
    "UINT32": ("uint_contents", "I"),
    "UINT64": ("uint64_contents", "Q"),
    "INT8": ("int_contents", "b"),
    "INT16": ("int_contents", "h"),
    "INT32": ("int_contents", "i"),
    "INT64": ("int64_contents", "q"),
    "FP16": (None, "e"),  # no typed field in the proto: FP16 travels raw only
    "FP32": ("fp32_contents", "f"),
    "FP64": ("fp64_contents", "d"),
    "BYTES": ("bytes_contents", ""),
}


class TensorError(ValueError):
    """Contents that do not fit their datatype or shape; the message says which and why."""


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def decode_typed(datatype: str, contents: InferTensorContents) -> list[Any]:
    """The flat values of typed contents (BYTES as ``bytes``)."""
    field = _format(datatype)[0]
    if field is None:
        raise TensorError(f"datatype {datatype} has no typed contents (send it raw)")
    return list(getattr(contents, field))


def decode_raw(datatype: str, raw: bytes) -> list[Any]:
    """The flat values of raw little-endian contents (BYTES as ``bytes``)."""
    form = _format(datatype)[1]
    if datatype == "BYTES":
        return _split_bytes(raw)
    size = struct.calcsize("<" + form)
    if len(raw) % size:
        raise TensorError(f"{len(raw)} raw bytes are not a whole number of {datatype} elements")
    return list(struct.unpack(f"<{len(raw) // size}{form}", raw))


def encode_raw(datatype: str, values: Sequence[Any]) -> bytes:
    form = _format(datatype)[1]
    if datatype == "BYTES":
        items = [_as_bytes(v) for v in values]
        return b"".join(struct.pack("<I", len(item)) + item for item in items)
    if datatype == "BOOL" and not all(isinstance(v, bool) for v in values):
        raise TensorError("BOOL values must be true or false")
    try:
        return struct.pack(f"<{len(values)}{form}", *values)
    except (struct.error, TypeError, OverflowError) as exc:
        raise TensorError(f"values do not fit {datatype}: {exc}") from None


def encode_typed(datatype: str, values: Sequence[Any], contents: InferTensorContents) -> None:
    field = _format(datatype)[0]
    if field is None:
        raise TensorError(f"datatype {datatype} has no typed contents")
    if datatype == "BYTES":
        values = [_as_bytes(v) for v in values]
    elif datatype.startswith(("INT", "UINT", "BOOL")):
        encode_raw(datatype, values)  # the typed fields are wider or looser: check the datatype's own
    try:
        getattr(contents, field).extend(values)
    except (TypeError, ValueError) as exc:
        raise TensorError(f"values do not fit {datatype}: {exc}") from None


def json_values(datatype: str, values: list[Any], *, strict: bool = True) -> list[Any]:
    """Values as KServe v2 JSON carries them: BYTES as UTF-8 text (``strict``: refuse other
    bytes rather than change them; records use replacement characters instead)."""
    if datatype != "BYTES":
        return values
    try:
        return [v.decode("utf-8", "strict" if strict else "replace") for v in values]
    except UnicodeDecodeError:
        raise TensorError("a BYTES element is not UTF-8 text, which KServe v2 JSON cannot carry") from None


def flatten(data: Any) -> list[Any]:
    """KServe v2 JSON allows nested (row-major) or flat ``data``: always flat here."""
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    stack = [iter(data)]
    while stack:
        for item in stack[-1]:
            if isinstance(item, list):
                stack.append(iter(item))
                break
            flat.append(item)
        else:
            stack.pop()
    return flat


def _format(datatype: str) -> tuple[str | None, str]:
    try:
        return FORMATS[datatype]
    except KeyError:
        raise TensorError(f"unknown datatype {datatype!r}") from None


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TensorError(f"a BYTES element must be a string, got {type(value).__name__}")


def _split_bytes(raw: bytes) -> list[bytes]:
    items: list[bytes] = []
    offset = 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            raise TensorError("raw BYTES contents end inside an element's length")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise TensorError("raw BYTES contents end inside an element")
        items.append(raw[offset : offset + length])
        offset += length
    return items
