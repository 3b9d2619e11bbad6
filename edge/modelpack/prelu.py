"""Rewrite PRelu nodes as cheap element-wise ops, exactly (same function, fp32 and int8 packs).

Measured here (ORT 1.32, one thread): ONNX Runtime's CPU PRelu kernel with a per-channel
slope takes 0.92 ms on a 1x64x56x56 tensor, where Mul or Relu take 0.03 ms. The embedders of
build 4 (512-d and 192-d) had 33 PRelu layers each (SFace has 27), which made PRelu about half
of their run time, in fp32 AND in int8 (ORT has no quantized PRelu, so the int8 graph ran it in
float between DQ and Q anyway). Rewritten, they ran 1.55-1.6x faster in fp32 and int8 alike
(512-d fp32 12.8 -> 8.1 ms, int8 10.4 -> 6.6 ms; 192-d fp32 13.5 -> 8.7 ms, int8 11.6 -> 7.1 ms),
O-Net 0.93 -> 0.68 ms.

Per layer, with slopes a (one per channel):
- every a <= 1:  y = Max(x, a*x)            (x > 0: x >= a*x; x < 0: a*x >= x)
- every a >= 1:  y = Min(x, a*x)
- otherwise:     y = x + (a - 1) * Min(x, 0)
The new nodes' names are returned so the quantizer can keep them in float: quantizing them
(tried) ran no faster and only adds Q/DQ pairs and rounding.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge.modelpack.graph import set_nodes

_ZERO = "prelu_rewrite_zero"


def _rewrite_prelus(model: onnx.ModelProto, form) -> list[str]:
    """Replace each PRelu whose slope is a constant by the nodes `form(graph, initializers, node,
    slope)` returns (None keeps it), in place; returns the new node names."""
    g = model.graph
    init = {i.name: i for i in g.initializer}
    nodes: list[onnx.NodeProto] = []
    created: list[str] = []
    for n in g.node:
        new = None
        if n.op_type == "PRelu" and n.input[1] in init:
            new = form(g, init, n, numpy_helper.to_array(init[n.input[1]]))
        if new is None:
            nodes.append(n)
            continue
        nodes.extend(new)
        created.extend(k.name for k in new)
    set_nodes(g, nodes)
    onnx.checker.check_model(model)
    return created


def unfold_prelu(model: onnx.ModelProto, for_int8: bool = False) -> list[str]:
    """Replace every PRelu with a constant slope in `model` (in place); returns the new node names.

    `for_int8` always takes the Min/Mul/Add form, which int8_prelu.py can run on uint8 codes with
    every tensor keeping its own calibrated range (Max(x, a*x) on codes would need x and y to
    share one range, which cost the 512-d embedder 0.26 LFW points)."""

    def form(g, init, n, slope):
        x, slope_name = n.input
        y, p = n.output[0], (n.name or n.output[0])
        if not for_int8 and (slope.max() <= 1 or slope.min() >= 1):
            op = "Max" if slope.max() <= 1 else "Min"
            return [helper.make_node("Mul", [x, slope_name], [p + "_ax"], name=p + "_mul"),
                    helper.make_node(op, [x, p + "_ax"], [y], name=p + "_select")]
        if _ZERO not in init:
            init[_ZERO] = numpy_helper.from_array(np.zeros(1, np.float32), _ZERO)
            g.initializer.append(init[_ZERO])
        am1 = numpy_helper.from_array((slope - 1).astype(np.float32), slope_name + "_minus1")
        g.initializer.append(am1)
        init[am1.name] = am1
        return [helper.make_node("Min", [x, _ZERO], [p + "_neg"], name=p + "_min"),
                helper.make_node("Mul", [p + "_neg", am1.name], [p + "_negs"], name=p + "_mul"),
                helper.make_node("Add", [x, p + "_negs"], [y], name=p + "_add")]

    return _rewrite_prelus(model, form)


def unfold_prelu_as_relu(model: onnx.ModelProto) -> list[str]:
    """Replace every PRelu whose slopes a are all <= 1 by y = x + Relu((a - 1) * x), the
    multiply as a 1x1 depthwise Conv (in place); returns the new node names.

    Exact: for x > 0, (a - 1) * x <= 0 and y = x; for x < 0, y = x + (a - 1) * x = a * x. Every
    operator of this form has a fast kernel in ONNX Runtime's blocked NCHWc layout (the depthwise
    Conv with its Relu fused, Add), where Max and Min have none and make each layer convert to
    and from it; quantized, it is a QLinearConv with the Relu fused and a QLinearAdd, one pass
    fewer than the Min/Mul/Add form with the same numbers (measured on the liveness model: about half its time).
    A PRelu with a slope above 1 is left as it is."""

    def form(g, init, n, slope):
        if slope.max() > 1 or slope.ndim != 3 or slope.shape[1:] != (1, 1):
            return None
        x, y, p = n.input[0], n.output[0], (n.name or n.output[0])
        weights = numpy_helper.from_array((slope - 1).astype(np.float32).reshape(-1, 1, 1, 1), p + "_slope_minus1")
        g.initializer.append(weights)
        return [helper.make_node("Conv", [x, weights.name], [p + "_neg"], name=p + "_dw",
                                 group=len(slope), kernel_shape=[1, 1]),
                helper.make_node("Relu", [p + "_neg"], [p + "_relu"], name=p + "_relu"),
                helper.make_node("Add", [x, p + "_relu"], [y], name=p + "_add")]

    return _rewrite_prelus(model, form)
