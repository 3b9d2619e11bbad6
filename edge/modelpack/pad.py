"""Pad a network's inner channels with zeros to a multiple of 16, exactly (the same function).

The liveness network is a pruned MobileFaceNet: its bottlenecks widen to 103, 13, 231, 52, 26,
77 and 308 channels. ONNX Runtime's fast x86 kernels want channel counts in blocks of 16: the
float convolutions run in its blocked NCHWc layout only on such counts (on the others each
layer converts to and from it), and the int8 convolutions run about 3x slower. Measured on
one thread of the Intel Xeon of this round (ORT 1.32, interleaved runs, machine shared):
padded, the int8 model ran in 0.53x the time and the float one in 0.54x, with 9 % more
multiply-adds. On a CPU without such kernels (ARM) those 9 % would be
a cost with nothing gained; not measured.

What is padded: the output channels of a 1x1 convolution whose count is not a multiple of
the block and which reach only full convolutions through PRelu and depthwise convolutions
(a bottleneck's inside), all along that way; the full convolutions read the added channels
with zero weights. A zero channel stays
zero through all of them (zero weights, zero bias, PRelu(0) = 0), so the output is unchanged;
a padded tensor that reaches any other operator is refused rather than guessed at.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import numpy_helper

from edge.modelpack.errors import ModelBuildError

BLOCK = 16


def pad_channels(model: onnx.ModelProto, block: int = BLOCK) -> int:
    """Pad `model` in place (graph in topological order, as exported); returns how many
    tensors were widened."""
    g = model.graph
    init = {i.name: i for i in g.initializer}
    widened: dict[str, tuple[int, int]] = {}  # tensor -> (channels, padded channels)

    def weight(name: str) -> np.ndarray:
        if name not in init:
            raise ModelBuildError(f"pad_channels: {name} is not a constant")
        return numpy_helper.to_array(init[name])

    def store(name: str, value: np.ndarray) -> None:
        init[name].CopyFrom(numpy_helper.from_array(value, name))

    def zeros_after(value: np.ndarray, extra: int, axis: int) -> np.ndarray:
        shape = list(value.shape)
        shape[axis] = extra
        return np.concatenate([value, np.zeros(shape, value.dtype)], axis=axis)

    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in g.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for out in g.output:  # a graph output is read by the caller, who expects its channels
        consumers.setdefault(out.name, []).append(onnx.NodeProto(op_type="graph output"))

    for node in g.node:
        seen = widened.get(node.input[0]) if node.input else None
        if node.op_type == "Conv":
            group = next((a for a in node.attribute if a.name == "group"), None)
            w = weight(node.input[1])
            bias = node.input[2] if len(node.input) > 2 else None
            if group is not None and group.i > 1:  # depthwise: each channel on its own
                if seen is None:
                    continue
                channels, padded = seen
                if group.i != channels or w.shape[0] != channels:
                    raise ModelBuildError(f"pad_channels: {node.name} is a grouped, not a depthwise, convolution")
                store(node.input[1], zeros_after(w, padded - channels, 0))
                if bias:
                    store(bias, zeros_after(weight(bias), padded - channels, 0))
                group.i = padded
                widened[node.output[0]] = seen
                continue
            if seen is not None:
                w = zeros_after(w, seen[1] - seen[0], 1)
            out = w.shape[0]
            if out % block and w.shape[2:] == (1, 1) and _reaches_only_convs(node.output[0], consumers):
                padded = -(-out // block) * block
                w = zeros_after(w, padded - out, 0)
                if bias:
                    store(bias, zeros_after(weight(bias), padded - out, 0))
                widened[node.output[0]] = (out, padded)
            store(node.input[1], w)
        elif node.op_type == "PRelu" and seen is not None:
            slope = weight(node.input[1])
            if slope.ndim != 3 or slope.shape[0] != seen[0]:
                raise ModelBuildError(f"pad_channels: {node.name} has no per-channel slope of shape (C, 1, 1)")
            store(node.input[1], zeros_after(slope, seen[1] - seen[0], 0))
            widened[node.output[0]] = seen
        elif any(i in widened for i in node.input):
            raise ModelBuildError(f"pad_channels: {node.op_type} {node.name} would read padded channels")
    del g.value_info[:]  # the inferred shapes of the widened tensors are stale
    onnx.checker.check_model(model)
    return len(widened)


def _reaches_only_convs(tensor: str, consumers: dict[str, list[onnx.NodeProto]]) -> bool:
    """Whether every path from `tensor` goes through PRelu and depthwise convolutions only
    into full convolutions, which can read padded channels with zero weights."""
    for node in consumers.get(tensor, []):
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if node.op_type == "Conv" and group == 1 and node.input[0] == tensor:
            continue
        if not (node.op_type == "PRelu" or node.op_type == "Conv" and group > 1) or node.input[0] != tensor:
            return False
        if not _reaches_only_convs(node.output[0], consumers):
            return False
    return True
