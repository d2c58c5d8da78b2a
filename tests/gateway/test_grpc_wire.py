"""Reading the model's name and version off a ``ModelInferRequest``'s wire format
(``gateway/grpc/wire.py``): the same answer as protobuf's own parser, whatever order or
repetition the fields come in, and the same refusals."""

from __future__ import annotations

import numpy as np
import pytest
from google.protobuf.message import DecodeError

from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.wire import PARSE_UP_TO, ModelRef, WireError, model_ref, scan


def request(name: str = "mlp", version: str = "", floats: int = 4) -> pb.ModelInferRequest:
    message = pb.ModelInferRequest(model_name=name, model_version=version, id="call-1")
    message.inputs.add(name="x", datatype="FP32", shape=[1, floats])
    message.raw_input_contents.append(np.full(floats, 0.5, dtype="<f4").tobytes())
    message.parameters["sequence_id"].int64_param = 7
    return message


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2), small enough for one-byte key and length."""
    return bytes([number << 3 | 2, len(payload)]) + payload


UNKNOWN = {
    "varint": bytes([99 << 3 & 0x7F | 0x80, 99 >> 4, 0x96, 0x01]),  # field 99, varint 150
    "fixed64": bytes([15 << 3 | 1]) + bytes(8),
    "fixed32": bytes([14 << 3 | 5]) + bytes(4),
}

WELL_FORMED = {
    "name and version": request("adder", "2").SerializeToString(),
    "name only": request("adder").SerializeToString(),
    "name after the tensors": request("", "").SerializeToString() + field(1, b"late") + field(2, b"3"),
    "name given twice (the last wins)": field(1, b"first") + request("second", "1").SerializeToString(),
    "unknown fields of every wire type": b"".join(UNKNOWN.values())
    + request("adder", "1").SerializeToString(),
    "empty": b"",
    "non-ASCII name": request("gr\u00fc\u00df").SerializeToString(),
}

MALFORMED = {
    "truncated length": request("adder").SerializeToString()[:-3],
    "truncated varint": bytes([0x08, 0x80]),
    "group wire type": bytes([1 << 3 | 3]),
    "field number 0": bytes([0 << 3 | 2, 0]),
    "name not UTF-8": field(1, b"\xff\xfe"),
}


@pytest.mark.parametrize("body", list(WELL_FORMED.values()), ids=list(WELL_FORMED))
def test_scan_reads_what_protobuf_parses(body: bytes) -> None:
    parsed = pb.ModelInferRequest.FromString(body)

    assert scan(body) == ModelRef(parsed.model_name, parsed.model_version)


@pytest.mark.parametrize("body", list(MALFORMED.values()), ids=list(MALFORMED))
def test_scan_refuses_what_protobuf_refuses(body: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.ModelInferRequest.FromString(body)
    with pytest.raises(WireError):
        scan(body)
    with pytest.raises(WireError):
        model_ref(body)


def test_large_requests_are_scanned_and_agree_with_the_parse() -> None:
    small = request("adder", "1").SerializeToString()
    large = request("adder", "1", floats=PARSE_UP_TO // 4 + 1).SerializeToString()
    assert len(small) <= PARSE_UP_TO < len(large)

    assert model_ref(small) == model_ref(large) == ModelRef("adder", "1")
    with pytest.raises(WireError):
        model_ref(large[:-1])  # the tensor's length says more than is there
