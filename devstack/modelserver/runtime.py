"""Tiny MLServer runtimes for tests (numpy only, nothing downloaded).

MLServer imports this module as top-level ``runtime`` (``mlserver start <dir>`` puts ``<dir>`` on
``sys.path``), via ``"implementation": "runtime.<Class>"`` in each ``model-settings.json``.

* ``AdderModel``: input ``x`` FP32 [N, K]; output ``sum`` FP32 [N] = row sums * ``multiplier``;
  with ``with_count`` also ``count`` INT64 [N] = K. Both knobs come from ``parameters.extra`` of the
  model settings, so one class serves ``adder`` v1 (multiplier 1) and v2 (multiplier 2 + count).
* ``SlowModel``: sleeps ``parameters.sleep_ms`` (request level) without blocking the event loop,
  then echoes every input as output ``y`` (first input) / ``<name>`` (others).
* ``FailingModel``: ``predict`` raises ``RuntimeError`` (an unhandled error, answered 500).
* ``OpenVinoModel``: a version the agent published, run by the OpenVINO runtime (``make run``).
"""

# mlserver ships no py.typed: its names are Any to mypy (imports ignored below, subclassing Any allowed).
# mypy: allow-subclassing-any

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import numpy as np
from mlserver import MLModel  # type: ignore[import-untyped]
from mlserver.errors import InferenceError  # type: ignore[import-untyped]
from mlserver.types import (  # type: ignore[import-untyped]
    InferenceRequest,
    InferenceResponse,
    RequestInput,
    ResponseOutput,
)


def _extra(model: Any) -> dict[str, Any]:
    params = model.settings.parameters
    extra = getattr(params, "extra", None) if params is not None else None
    return dict(extra) if isinstance(extra, dict) else {}


def _request_params(payload: Any) -> dict[str, Any]:
    params = payload.parameters
    if params is None:
        return {}
    dumped: dict[str, Any] = params.model_dump()
    return dumped


def _decode_fp32_matrix(inp: Any) -> np.ndarray[Any, np.dtype[np.float32]]:
    if inp.datatype != "FP32":
        raise InferenceError(f"input {inp.name!r}: datatype must be FP32, got {inp.datatype}")
    shape = [int(d) for d in inp.shape]
    if len(shape) != 2:
        raise InferenceError(f"input {inp.name!r}: shape must be [N, K], got {shape}")
    flat = np.asarray(inp.data.root, dtype=np.float32).reshape(-1)
    if flat.size != shape[0] * shape[1]:
        raise InferenceError(f"input {inp.name!r}: {flat.size} values do not fit shape {shape}")
    return flat.reshape(shape)


class AdderModel(MLModel):
    async def load(self) -> bool:
        extra = _extra(self)
        self._multiplier = float(extra.get("multiplier", 1.0))
        self._with_count = bool(extra.get("with_count", False))
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {i.name: i for i in payload.inputs}
        if "x" not in inputs:
            raise InferenceError(f"expected input 'x', got {sorted(inputs)}")
        x = _decode_fp32_matrix(inputs["x"])
        n, k = x.shape
        sums = (x.sum(axis=1, dtype=np.float32) * np.float32(self._multiplier)).astype(np.float32)
        outputs = [ResponseOutput(name="sum", datatype="FP32", shape=[n], data=sums.tolist())]
        if self._with_count:
            outputs.append(ResponseOutput(name="count", datatype="INT64", shape=[n], data=[k] * n))
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)


class SlowModel(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raw = _request_params(payload).get("sleep_ms", 0)
        try:
            sleep_ms = float(raw)
        except (TypeError, ValueError):
            raise InferenceError(f"parameters.sleep_ms must be a number, got {raw!r}") from None
        if sleep_ms > 0:
            await asyncio.sleep(sleep_ms / 1000.0)
        outputs = []
        for idx, inp in enumerate(payload.inputs):
            src: RequestInput = inp
            outputs.append(
                ResponseOutput(
                    name="y" if idx == 0 else src.name,
                    datatype=src.datatype,
                    shape=list(src.shape),
                    data=src.data,
                )
            )
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)


class FailingModel(MLModel):
    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        raise RuntimeError("failing model: predict always raises")


class MlpModel(MLModel):
    """A small dense network with fixed random weights: a model whose answer costs real CPU
    (a few milliseconds a row), for measuring what the gateway adds to a realistic call.
    ``parameters.extra``: ``inputs`` (features), ``width`` and ``depth`` (hidden layers)."""

    async def load(self) -> bool:
        extra = _extra(self)
        features, width, depth = (
            int(extra.get("inputs", 64)),
            int(extra.get("width", 1024)),
            int(extra.get("depth", 4)),
        )
        rng = np.random.default_rng(7)
        sizes = [features, *([width] * depth), 10]
        self._layers = [
            rng.standard_normal((a, b), dtype=np.float32) / np.float32(np.sqrt(a))
            for a, b in itertools.pairwise(sizes)
        ]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = _decode_fp32_matrix(payload.inputs[0])
        if x.shape[1] != self._layers[0].shape[0]:
            raise InferenceError(f"input: expected {self._layers[0].shape[0]} features, got {x.shape[1]}")
        for layer in self._layers[:-1]:
            x = np.maximum(x @ layer, 0)
        scores = x @ self._layers[-1]
        output = ResponseOutput(
            name="scores", datatype="FP32", shape=list(scores.shape), data=scores.ravel().tolist()
        )
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=[output])


_OV_DATATYPES = {"FP32": np.float32, "FP64": np.float64, "INT32": np.int32, "INT64": np.int64}


class OpenVinoModel(MLModel):
    """A model version the agent published, loaded with the OpenVINO runtime as OVMS would.

    ``parameters.uri`` is the version directory; the model file in it is found by OVMS's rules
    (agent/preflight.py). Written by devstack/ovmsfollow.py, which follows config.json."""

    async def load(self) -> bool:
        import openvino

        from agent.preflight import model_file

        directory = str(self.settings.parameters.uri)
        found = model_file(Path(directory))
        if found is None:
            raise InferenceError(f"no model file OpenVINO reads in {directory}")
        self._compiled = openvino.Core().compile_model(str(found), "CPU")
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feed = {}
        for inp in payload.inputs:
            dtype = _OV_DATATYPES.get(inp.datatype)
            if dtype is None:
                raise InferenceError(f"input {inp.name!r}: datatype {inp.datatype} is not supported here")
            feed[inp.name] = np.asarray(inp.data.root, dtype=dtype).reshape([int(d) for d in inp.shape])
        try:
            results = self._compiled(feed)
        except RuntimeError as exc:
            raise InferenceError(" ".join(str(exc).split())) from None
        outputs = []
        for port, value in results.items():
            array = np.asarray(value)
            datatype = next((k for k, v in _OV_DATATYPES.items() if array.dtype == v), "FP32")
            outputs.append(
                ResponseOutput(
                    name=port.get_any_name(),
                    datatype=datatype,
                    shape=list(array.shape),
                    data=array.ravel().tolist(),
                )
            )
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)
