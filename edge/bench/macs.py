"""Multiply-accumulate count of an ONNX model for a given input shape.

Counts the layers that carry the work (Conv, ConvTranspose, Gemm, MatMul); element-wise
layers are a rounding error next to them. A QDQ int8 model does the same MACs as its fp32
source, so counting the fp32 graph is the honest figure for both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _shape(value_info) -> list[int] | None:
    dims = value_info.type.tensor_type.shape.dim
    if not dims or any(not d.HasField("dim_value") for d in dims):
        return None
    return [d.dim_value for d in dims]


def count_macs(model_path: str | Path, input_shape: list[int]) -> int:
    """MACs of one inference with the (single) graph input fixed to `input_shape`."""
    import onnx
    from onnx import shape_inference

    model = onnx.load(str(model_path))
    graph = model.graph
    initializers = {i.name: list(i.dims) for i in graph.initializer}
    real_input = next(i for i in graph.input if i.name not in initializers)
    dims = real_input.type.tensor_type.shape.dim
    for dim, size in zip(dims, input_shape):
        dim.Clear()
        dim.dim_value = int(size)
    # Shapes the exporter stored for one input size (YuNet's 640x640) would win over the new ones.
    del graph.value_info[:]
    for output in graph.output:
        output.type.tensor_type.ClearField("shape")
    inferred = shape_inference.infer_shapes(model, strict_mode=False)

    shapes: dict[str, list[int]] = dict(initializers)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        shape = _shape(vi)
        if shape is not None:
            shapes[vi.name] = shape

    total = 0
    for node in inferred.graph.node:
        out = shapes.get(node.output[0])
        if node.op_type in ("Conv", "ConvTranspose"):
            weight = shapes.get(node.input[1])
            if out is None or weight is None:
                continue
            # weight: (Cout, Cin/group, kh, kw) for Conv, (Cin, Cout/group, kh, kw) for ConvTranspose
            kernel = int(np.prod(weight[2:]))
            if node.op_type == "Conv":
                total += int(np.prod(out)) * weight[1] * kernel
            else:
                total += int(np.prod(shapes.get(node.input[0], [0]))) * weight[1] * kernel
        elif node.op_type in ("Gemm", "MatMul"):
            a = shapes.get(node.input[0])
            if out is None or a is None:
                continue
            trans_a = any(att.name == "transA" and att.i for att in node.attribute)
            k = a[-2] if trans_a else a[-1]
            total += int(np.prod(out)) * k
    return total
