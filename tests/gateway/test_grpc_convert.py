"""KServe v2 JSON <-> protobuf, exactly: every datatype, shape and parameter survives the trip,
and raw contents decode as numpy and tritonclient (written by others) encode them."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from tritonclient.utils import serialize_byte_tensor

from gateway.binary import BinaryError, encode_answer, header_length, inline, split
from gateway.grpc import convert
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.tensors import decode_raw

INTS = {"INT8": 8, "INT16": 16, "INT32": 32, "INT64": 64}
UINTS = {"UINT8": 8, "UINT16": 16, "UINT32": 32, "UINT64": 64}


def values(datatype: str) -> st.SearchStrategy[Any]:
    if datatype in INTS:
        bits = INTS[datatype]
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    if datatype in UINTS:
        return st.integers(0, 2 ** UINTS[datatype] - 1)
    if datatype == "BOOL":
        return st.booleans()
    if datatype == "BYTES":
        return st.text(max_size=8)
    width = {"FP16": 16, "FP32": 32, "FP64": 64}[datatype]
    return st.floats(width=width, allow_nan=False)  # NaN != NaN; infinities are fine


@st.composite
def tensors(draw: st.DrawFn, name: str) -> dict[str, Any]:
    datatype = draw(st.sampled_from([*INTS, *UINTS, "BOOL", "BYTES", "FP16", "FP32", "FP64"]))
    shape = draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    count = int(np.prod(shape))
    data = draw(st.lists(values(datatype), min_size=count, max_size=count))
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


parameters = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=5)),
)


@given(
    st.lists(st.integers(0, 99), min_size=1, max_size=4, unique=True).flatmap(
        lambda ids: st.tuples(*[tensors(f"t{i}") for i in ids])
    ),
    parameters,
)
def test_request_round_trip_is_exact(inputs: tuple[dict[str, Any], ...], params: dict[str, Any]) -> None:
    request = {"id": "r", "parameters": params, "inputs": list(inputs), "outputs": [{"name": "o"}]}
    if not params:
        del request["parameters"]

    message, binary = convert.request_to_proto(json.dumps(request).encode(), "m", "3")

    assert convert.request_document(message) == request
    parsed = pb.ModelInferRequest.FromString(message)
    assert (parsed.model_name, parsed.model_version) == ("m", "3")
    assert bool(parsed.raw_input_contents) == any(t["datatype"] == "FP16" for t in inputs)
    assert not binary.any


@given(
    st.lists(st.integers(0, 99), min_size=1, max_size=4, unique=True).flatmap(
        lambda ids: st.tuples(*[tensors(f"t{i}") for i in ids])
    )
)
def test_answer_round_trip_is_exact(outputs: tuple[dict[str, Any], ...]) -> None:
    answer = {"model_name": "m", "model_version": "1", "id": "a", "outputs": list(outputs)}

    message = convert.response_to_proto(json.dumps(answer).encode())

    assert convert.response_document(message) == answer


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [
        ("FP16", "<f2"),
        ("FP32", "<f4"),
        ("FP64", "<f8"),
        ("INT8", "i1"),
        ("UINT16", "<u2"),
        ("INT64", "<i8"),
        ("BOOL", "?"),
    ],
)
def test_raw_contents_decode_as_numpy_writes_them(datatype: str, dtype: str) -> None:
    array = (
        np.array([1, 0, 3, 7], dtype=dtype)
        if dtype != "<f2"
        else np.array([0.1, -2.5, 65504, 6e-8], dtype=dtype)
    )
    assert decode_raw(datatype, array.tobytes()) == array.tolist()


def test_raw_bytes_decode_as_tritonclient_writes_them() -> None:
    words = np.array([b"", b"a", "\u00fc".encode(), b"\x00\xff"], dtype=np.object_)
    serialized = serialize_byte_tensor(words)
    assert serialized is not None
    assert decode_raw("BYTES", serialized.item()) == words.tolist()


@pytest.mark.parametrize(
    ("request_body", "words"),
    [
        (
            {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}],
                "parameters": {"p": 0.5},
            },
            "parameters.p",
        ),
        (
            {
                "inputs": [
                    {"name": "x", "datatype": "FP32", "shape": [1], "parameters": {"binary_data_size": 4}}
                ]
            },
            "binary_data_size without Inference-Header-Content-Length",
        ),
        ({"inputs": [{"name": "x", "datatype": "FP8", "shape": [1], "data": [1]}]}, "unknown datatype 'FP8'"),
        ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]}, "do not fit INT8"),
        ({"inputs": [{"name": "x", "datatype": "BOOL", "shape": [1], "data": [2]}]}, "true or false"),
        ({"inputs": [{"name": "x", "datatype": "FP16", "shape": [1], "data": [1e6]}]}, "do not fit FP16"),
        ({"inputs": []}, "inputs: must be a non-empty list"),
        ({"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": [5]}]}, "must be a string"),
    ],
)
def test_what_has_no_grpc_form_is_refused_with_the_reason(request_body: dict[str, Any], words: str) -> None:
    with pytest.raises(convert.ConvertError, match=words):
        convert.request_to_proto(json.dumps(request_body).encode(), "m", None)


def test_bytes_that_are_not_text_are_refused_as_json_but_recorded() -> None:
    answer = pb.ModelInferResponse(model_name="m")
    answer.outputs.add(name="o", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"\xff")
    message = answer.SerializeToString()

    with pytest.raises(convert.ConvertError, match="not UTF-8"):
        convert.response_document(message)
    assert convert.response_document(message, strict=False)["outputs"][0]["data"] == ["\ufffd"]


def test_binary_request_goes_raw_untouched_and_binary_answers_come_back() -> None:
    header = {
        "parameters": {"binary_data_output": True, "keep": 1},
        "inputs": [
            {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}},
            {"name": "b", "datatype": "INT64", "shape": [1], "data": [7]},
        ],
        "outputs": [{"name": "plain", "parameters": {"binary_data": False}}],
    }
    head = json.dumps(header).encode()
    raw = np.array([1.5, -2], dtype="<f4").tobytes()

    message, binary = convert.request_to_proto(head + raw, "m", None, len(head))

    parsed = pb.ModelInferRequest.FromString(message)
    assert parsed.raw_input_contents[0] == raw  # the client's bytes, as they came
    assert np.frombuffer(parsed.raw_input_contents[1], "<i8").tolist() == [7]
    assert dict(parsed.parameters) == {"keep": pb.InferParameter(int64_param=1)}  # transport keys dropped
    assert binary.wanted("other") and not binary.wanted("plain")
    answer = {
        "model_name": "m",
        "outputs": [
            {"name": "other", "datatype": "FP16", "shape": [1], "data": [0.5]},
            {"name": "plain", "datatype": "BYTES", "shape": [1], "data": ["t"]},
        ],
    }
    body, length = encode_answer(json.loads(json.dumps(answer)), binary)
    assert length is not None and body[length:] == np.array([0.5], "<f2").tobytes()
    assert inline(body, length, "outputs") == answer


def test_binary_bodies_that_do_not_add_up_are_refused() -> None:
    with pytest.raises(BinaryError, match="not a byte count"):
        header_length("12a", 100)
    with pytest.raises(BinaryError, match="not a byte count"):
        header_length("101", 100)
    tensor = {"name": "a", "datatype": "FP32", "shape": [2], "parameters": {"binary_data_size": 8}}
    head = json.dumps({"inputs": [tensor]}).encode()
    with pytest.raises(BinaryError, match="runs past the end"):
        split(head + b"1234", len(head), "inputs")
    with pytest.raises(convert.ConvertError, match="runs past the end"):
        convert.request_to_proto(head + b"1234", "m", None, len(head))
