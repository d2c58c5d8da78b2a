"""KServe v2's binary tensor extension (Triton's, which OVMS accepts and ``tritonclient.http``
sends with ``binary_data=True``): a JSON header of ``Inference-Header-Content-Length`` bytes, then
the raw bytes of every tensor whose ``parameters.binary_data_size`` says how many are its, in the
order the tensors are listed. The REST provider passes such bodies on unchanged; this module reads
them (for records, and for the gRPC adapter's raw contents) and writes them (the gRPC adapter's
answers to a client that asked for binary outputs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway.grpc.tensors import TensorError, decode_raw, encode_raw, flatten, json_values

HEADER = "Inference-Header-Content-Length"
# The extension's own parameters: about the HTTP body, meaningless to a gRPC model server.
TRANSPORT_PARAMETERS = ("binary_data_size", "binary_data", "binary_data_output")

Document = dict[str, Any]


class BinaryError(ValueError):
    """A body that does not hold what its header says; the text says what is wrong."""


def header_length(value: str | None, body_length: int) -> int | None:
    """The header's value, checked against the body it describes (None: no header, plain JSON)."""
    if value is None:
        return None
    # isdigit() alone admits '²' and other digits int() refuses: ASCII digits only. Past 4300
    # digits int() refuses even those (a 500), and any count longer than the body's is past it.
    count = value.lstrip("0") or "0"
    if (
        not (value.isascii() and value.isdigit())
        or len(count) > len(str(body_length))
        or int(count) > body_length
    ):
        shown = value if len(value) <= 40 else value[:40] + "..."  # no echo of a large input
        raise BinaryError(f"{HEADER}: {shown!r} is not a byte count within the {body_length}-byte body")
    return int(count)


def split(body: bytes, json_length: int, key: str) -> tuple[Document, list[bytes | None]]:
    """The JSON header, and each tensor's binary bytes (None for one whose values are in ``data``)."""
    try:
        document = json.loads(body[:json_length])
    except (ValueError, RecursionError):
        raise BinaryError(f"the first {json_length} bytes ({HEADER}) are not JSON") from None
    if not isinstance(document, dict) or not isinstance(document.get(key, []), list):
        raise BinaryError(f"the JSON header must be an object with a list of {key}")
    blobs: list[bytes | None] = []
    offset = json_length
    for tensor in document.get(key, []):
        size = (tensor.get("parameters") or {}).get("binary_data_size") if isinstance(tensor, dict) else None
        if size is None:
            blobs.append(None)
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(body):
            raise BinaryError(f"{key}: binary_data_size {size!r} runs past the end of the body")
        blobs.append(body[offset : offset + size])
        offset += size
    return document, blobs


def without_transport(parameters: Any) -> Any:
    if not isinstance(parameters, dict):
        return parameters
    return {k: v for k, v in parameters.items() if k not in TRANSPORT_PARAMETERS}


def inline(body: bytes, json_length: int, key: str, *, strict: bool = False) -> Document:
    """The body as the plain KServe v2 JSON it stands for: binary tensors decoded into ``data``."""
    document, blobs = split(body, json_length, key)
    for tensor, blob in zip(document.get(key, []), blobs, strict=True):
        if blob is None:
            continue
        try:
            tensor["data"] = json_values(
                tensor.get("datatype"), decode_raw(tensor.get("datatype"), blob), strict=strict
            )
        except TensorError as exc:
            raise BinaryError(f"tensor {tensor.get('name')!r}: {exc}") from None
        parameters = without_transport(tensor.get("parameters"))
        if parameters:
            tensor["parameters"] = parameters
        else:
            tensor.pop("parameters", None)
    return document


@dataclass(frozen=True)
class BinaryOutputs:
    """Which outputs a client asked for in binary: ``outputs[].parameters.binary_data``, else the
    request's ``parameters.binary_data_output`` (Triton's rule)."""

    default: bool = False
    named: dict[str, bool] = field(default_factory=dict)

    @classmethod
    def of(cls, request: Document) -> BinaryOutputs:
        default = (request.get("parameters") or {}).get("binary_data_output") is True
        named = {
            o["name"]: (o.get("parameters") or {}).get("binary_data") is True
            for o in request.get("outputs") or []
            if isinstance(o, dict) and isinstance(o.get("name"), str)
        }
        return cls(default, named)

    def wanted(self, name: str) -> bool:
        return self.named.get(name, self.default)

    @property
    def any(self) -> bool:
        return self.default or any(self.named.values())


def encode_answer(document: Document, binary: BinaryOutputs) -> tuple[bytes, int | None]:
    """A JSON answer with the outputs the client wants in binary moved behind the header; the
    header's length, or None when no output is binary (plain JSON)."""
    if not binary.any:
        return json.dumps(document).encode(), None
    tail: list[bytes] = []
    for output in document.get("outputs", []):
        if not binary.wanted(output["name"]):
            continue
        raw = encode_raw(output["datatype"], flatten(output.pop("data")))
        output["parameters"] = {**(output.get("parameters") or {}), "binary_data_size": len(raw)}
        tail.append(raw)
    header = json.dumps(document).encode()
    return header + b"".join(tail), len(header)
