"""Small real models built at start with the OpenVINO Python API (and ``onnx``), nothing downloaded.

``scaler_ir(factor)`` is ``output = input * factor`` on a 1x4 float tensor, as OpenVINO IR: the
factor is a weight in ``model.bin``, so each version answers with a value only it gives.
``scaler_onnx(factor)`` is the same graph as ONNX, built with ``onnx.helper``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path


def scaler_ir(factor: float) -> dict[str, bytes]:
    """``{"model.xml": ..., "model.bin": ...}`` of input * factor."""
    import numpy as np
    import openvino as ov
    from openvino import opset13 as ops

    data = ops.parameter([1, 4], ov.Type.f32, name="input")
    data.output(0).set_names({"input"})
    scaled = ops.multiply(data, ops.constant(np.full((1, 4), factor, dtype=np.float32)))
    scaled.output(0).set_names({"output"})
    model = ov.Model([ops.result(scaled)], [data], "scaler")
    with tempfile.TemporaryDirectory() as tmp:
        ov.save_model(model, Path(tmp) / "model.xml", compress_to_fp16=False)
        return {name: (Path(tmp) / name).read_bytes() for name in ("model.xml", "model.bin")}


def scaler_onnx(factor: float) -> bytes:
    """The bytes of ``model.onnx``: input * factor."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["input", "factor"], ["output"])],
        "scaler",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor("factor", TensorProto.FLOAT, [1, 4], [factor] * 4)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
