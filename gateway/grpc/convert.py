"""KServe v2 inference messages between their JSON (REST) and protobuf (gRPC) forms, exactly:
names, datatypes (BYTES, FP16 and BOOL included), shapes, parameters and values.

A JSON request becomes typed contents, or raw contents for every tensor when one of them is FP16
(the proto has no typed FP16 field, and a message is either all raw or all typed); a JSON answer
becomes raw contents, as OVMS answers over gRPC. Protobuf to
JSON reads whichever form came. Used by the gRPC model-service adapter (REST and Kafka providers
in front of a gRPC model server), by the gRPC provider in front of a REST model server, and by the
reporters to turn a gRPC call into prediction records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from typing import Any

from google.protobuf.message import DecodeError

from gateway.binary import HEADER, BinaryError, BinaryOutputs, split, without_transport
from gateway.grpc import grpc_predict_v2_pb2 as pb
from gateway.grpc.tensors import (
    TensorError,
    decode_raw,
    decode_typed,
    encode_raw,
    encode_typed,
    flatten,
    json_values,
)

Document = dict[str, Any]


class ConvertError(ValueError):
    """A message that has no exact counterpart in the other form; the text says why."""


def request_to_proto(
    body: bytes, model: str, version: str | None, json_length: int | None = None
) -> tuple[bytes, BinaryOutputs]:
    """A KServe v2 JSON inference request (with binary tensors after ``json_length`` bytes of
    JSON, when given) as a ``ModelInferRequest``; and which outputs the client wants in binary."""
    document, blobs = _request_parts(body, json_length)
    message = pb.ModelInferRequest(model_name=model, model_version=version or "")
    if "id" in document:
        message.id = _text(document["id"], "id")
    _set_parameters(message.parameters, without_transport(document.get("parameters")), "parameters")
    tensors = [_tensor(item, f"inputs[{i}]", blob is not None) for i, (item, blob) in enumerate(blobs)]
    # Binary tensors go on as raw contents, untouched; then every tensor must be raw.
    raw = any(blob is not None for _, blob in blobs) or any(t[1] == "FP16" for t in tensors)
    for (name, datatype, shape, parameters, values), (_, blob) in zip(tensors, blobs, strict=True):
        tensor = message.inputs.add(name=name, datatype=datatype, shape=shape)
        _set_parameters(tensor.parameters, without_transport(parameters), f"input {name!r} parameters")
        if blob is not None:
            message.raw_input_contents.append(blob)
        else:
            _fill(message.raw_input_contents if raw else None, tensor.contents, datatype, values, name)
    for index, item in enumerate(document.get("outputs") or []):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ConvertError(f"outputs[{index}]: must be an object with a name")
        wanted = message.outputs.add(name=item["name"])
        _set_parameters(
            wanted.parameters, without_transport(item.get("parameters")), f"outputs[{index}].parameters"
        )
    return message.SerializeToString(), BinaryOutputs.of(document)


def _request_parts(body: bytes, json_length: int | None) -> tuple[Document, list[tuple[Any, bytes | None]]]:
    if json_length is None:
        document = _json_object(body, "request")
        inputs = document.get("inputs")
        blobs: list[bytes | None] = [None] * len(inputs) if isinstance(inputs, list) else []
    else:
        try:
            document, blobs = split(body, json_length, "inputs")
        except BinaryError as exc:
            raise ConvertError(str(exc)) from None
        inputs = document.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ConvertError("inputs: must be a non-empty list of tensors")
    return document, list(zip(inputs, blobs, strict=True))


def response_to_proto(body: bytes) -> bytes:
    """A KServe v2 JSON inference answer as a ``ModelInferResponse``."""
    document = _json_object(body, "answer")
    message = pb.ModelInferResponse(
        model_name=str(document.get("model_name") or ""),
        model_version=str(document.get("model_version") or ""),
        id=str(document.get("id") or ""),
    )
    _set_parameters(message.parameters, document.get("parameters"), "parameters")
    outputs = document.get("outputs") or []
    if not isinstance(outputs, list):
        raise ConvertError("outputs: must be a list of tensors")
    for index, item in enumerate(outputs):
        name, datatype, shape, parameters, values = _tensor(item, f"outputs[{index}]")
        tensor = message.outputs.add(name=name, datatype=datatype, shape=shape)
        _set_parameters(tensor.parameters, parameters, f"output {name!r} parameters")
        # Raw, as OVMS answers over gRPC (and the only form tritonclient reads for numbers).
        _fill(message.raw_output_contents, tensor.contents, datatype, values, name)
    return message.SerializeToString()


def request_document(body: bytes, *, strict: bool = True) -> Document:
    """A ``ModelInferRequest`` as the KServe v2 JSON request it stands for."""
    message = _parse(pb.ModelInferRequest, body)
    document: Document = {}
    if message.id:
        document["id"] = message.id
    if message.parameters:
        document["parameters"] = _parameters(message.parameters)
    raw = list(message.raw_input_contents)
    document["inputs"] = [_tensor_document(t, raw, i, strict) for i, t in enumerate(message.inputs)]
    if message.outputs:
        document["outputs"] = [_requested(o) for o in message.outputs]
    return document


def response_document(body: bytes, *, strict: bool = True) -> Document:
    """A ``ModelInferResponse`` as the KServe v2 JSON answer it stands for."""
    message = _parse(pb.ModelInferResponse, body)
    document: Document = {"model_name": message.model_name, "model_version": message.model_version}
    if message.id:
        document["id"] = message.id
    if message.parameters:
        document["parameters"] = _parameters(message.parameters)
    raw = list(message.raw_output_contents)
    document["outputs"] = [_tensor_document(t, raw, i, strict) for i, t in enumerate(message.outputs)]
    return document


def request_to_json(body: bytes) -> bytes:
    return json.dumps(request_document(body)).encode()


def response_to_json(body: bytes) -> bytes:
    return json.dumps(response_document(body)).encode()


def _parse(kind: Any, body: bytes) -> Any:
    try:
        return kind.FromString(body)
    except DecodeError:
        raise ConvertError(f"not a {kind.DESCRIPTOR.name} message") from None


def _json_object(body: bytes, what: str) -> Document:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        raise ConvertError(f"the {what} is not valid JSON") from None
    if not isinstance(document, dict):
        raise ConvertError(f"the {what} must be a JSON object")
    return document


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConvertError(f"{where}: must be a string")
    return value


def _tensor(item: Any, where: str, binary: bool = False) -> tuple[str, str, list[int], Any, list[Any]]:
    if not isinstance(item, dict):
        raise ConvertError(f"{where}: must be an object")
    name, datatype = (
        _text(item.get("name"), f"{where}.name"),
        _text(item.get("datatype"), f"{where}.datatype"),
    )
    shape = item.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ConvertError(f"{where}.shape: must be a list of integers")
    parameters = item.get("parameters")
    if binary:
        return name, datatype, shape, parameters, []
    if isinstance(parameters, dict) and "binary_data_size" in parameters:
        raise ConvertError(f"{where}: binary_data_size without {HEADER}: the binary data is not in this body")
    if "data" not in item:
        raise ConvertError(f"{where}.data: missing")
    return name, datatype, shape, parameters, flatten(item["data"])


def _fill(raw: Any, contents: pb.InferTensorContents, datatype: str, values: list[Any], name: str) -> None:
    try:
        if raw is not None:
            raw.append(encode_raw(datatype, values))
        else:
            encode_typed(datatype, values, contents)
    except TensorError as exc:
        raise ConvertError(f"tensor {name!r}: {exc}") from None


def _tensor_document(tensor: Any, raw: list[bytes], index: int, strict: bool) -> Document:
    try:
        if raw:
            if index >= len(raw):
                raise TensorError("has no raw contents")
            values = decode_raw(tensor.datatype, raw[index])
        else:
            values = decode_typed(tensor.datatype, tensor.contents)
        data = json_values(tensor.datatype, values, strict=strict)
    except TensorError as exc:
        raise ConvertError(f"tensor {tensor.name!r}: {exc}") from None
    document: Document = {"name": tensor.name, "datatype": tensor.datatype, "shape": list(tensor.shape)}
    if tensor.parameters:
        document["parameters"] = _parameters(tensor.parameters)
    document["data"] = data
    return document


def _requested(output: Any) -> Document:
    document: Document = {"name": output.name}
    if output.parameters:
        document["parameters"] = _parameters(output.parameters)
    return document


def _parameters(parameters: Mapping[str, pb.InferParameter]) -> Document:
    result: Document = {}
    for key, parameter in parameters.items():
        choice = parameter.WhichOneof("parameter_choice")
        result[key] = getattr(parameter, choice) if choice else None
    return result


def _set_parameters(target: MutableMapping[str, pb.InferParameter], given: Any, where: str) -> None:
    if given is None:
        return
    if not isinstance(given, dict):
        raise ConvertError(f"{where}: must be an object")
    for key, value in given.items():
        if isinstance(value, bool):
            target[key].bool_param = value
        elif isinstance(value, int):
            target[key].int64_param = value
        elif isinstance(value, str):
            target[key].string_param = value
        else:  # KServe's proto has bool, int64 and string parameters only
            raise ConvertError(f"{where}.{key}: gRPC parameters are booleans, integers or strings")
