"""Run the PRelu layers of a QDQ-quantized embedder on uint8 codes, so ONNX Runtime fuses them.

For the int8 pack, prelu.py writes every PRelu as y = x + (a - 1) * Min(x, 0). Quantized as they
come from onnxruntime.quantization, those nodes run in float between DequantizeLinear and
QuantizeLinear; measured here (ORT 1.32, one thread, 512-d embedder) that float detour took
2.7 of 5.2 ms, more than all its QLinearConvs together (2.0 ms). This pass removes it:

- Min(x, 0): 0 is coded exactly by x's zero point, and the min of two codes of one scale is the
  code of the min, so with the output coded like x the node runs on the uint8 codes directly.
- the per-channel multiply by (a - 1) becomes a 1x1 depthwise Conv with int8 weights, one exact
  scale per channel, which ORT fuses into a QLinearConv. (Build 6 fused it into QLinearMul
  instead, which is slow with a per-channel constant to broadcast: 53 us on a 28x28x128
  tensor against about 15 us for the depthwise QLinearConv. The embedders ran
  3.67 -> 3.35 and 3.68 -> 3.40 ms, with the same embeddings, cosine > 0.9999 on 7,701 LFW crops.)
- Add(x, .): ORT already fuses it into QLinearAdd.

Every tensor keeps its own calibrated range. (The two-node form Max(x, a*x) would need x and y to
share one range on codes, which cost the 512-d embedder 0.26 LFW points; measured.)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge.modelpack.graph import set_nodes


class _Graph:
    def __init__(self, model: onnx.ModelProto):
        self.g = model.graph
        self.init = {i.name: i for i in self.g.initializer}
        self.producer = {o: n for n in self.g.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for n in self.g.node:
            for i in n.input:
                self.consumers.setdefault(i, []).append(n)
        self.replaced: dict[int, onnx.NodeProto | None] = {}  # id(old node) -> new node or None
        self.inserted_before: dict[int, list[onnx.NodeProto]] = {}  # id(old node) -> nodes to put first

    def made_by(self, tensor: str, op: str) -> onnx.NodeProto | None:
        node = self.producer.get(tensor)
        return node if node is not None and node.op_type == op else None

    def only_consumer(self, tensor: str, op: str) -> onnx.NodeProto | None:
        users = self.consumers.get(tensor, [])
        return users[0] if len(users) == 1 and users[0].op_type == op else None

    def value(self, name: str) -> np.ndarray:
        return numpy_helper.to_array(self.init[name])

    def add_initializer(self, name: str, array: np.ndarray) -> str:
        tensor = numpy_helper.from_array(array, name)
        self.g.initializer.append(tensor)
        self.init[name] = tensor
        return name

    def mul_to_depthwise_conv(self, mul: onnx.NodeProto, x: str, dq_slope: onnx.NodeProto,
                              slope: np.ndarray) -> bool:
        """Replace `mul` (x times the per-channel constant behind `dq_slope`) by a 1x1 depthwise
        Conv whose int8 weights code each channel's value exactly (code +-127, scale |value|/127)."""
        values = slope.astype(np.float32)
        if values.ndim not in (3, 4) or values.shape[-2:] != (1, 1) or values.size != values.shape[-3]:
            return False  # not one value per channel of an NCHW tensor
        values = values.reshape(-1)
        scales = np.where(values == 0, 1.0, np.abs(values) / 127).astype(np.float32)
        codes = np.clip(np.round(values / scales), -127, 127).astype(np.int8).reshape(-1, 1, 1, 1)
        base = mul.name + "_dw"
        weight = helper.make_node(
            "DequantizeLinear",
            [self.add_initializer(base + "_w", codes), self.add_initializer(base + "_w_scale", scales),
             self.add_initializer(base + "_w_zero_point", np.zeros(len(values), np.int8))],
            [base + "_w_float"], name=base + "_w_dq", axis=0)
        conv = helper.make_node("Conv", [x, base + "_w_float"], list(mul.output), name=base,
                                group=len(values), kernel_shape=[1, 1])
        self.inserted_before[id(mul)] = [weight]
        self.replaced[id(mul)] = conv
        self.replaced[id(dq_slope)] = None
        return True

    def commit(self) -> None:
        nodes = []
        for n in self.g.node:
            nodes.extend(self.inserted_before.get(id(n), []))
            new = self.replaced.get(id(n), n)
            if new is not None:
                nodes.append(new)
        set_nodes(self.g, nodes)  # also drops what no node reads any more: the replaced slopes' codes


def _rewrite(G: _Graph, node: onnx.NodeProto, float_values: dict[str, np.ndarray]) -> bool:
    """DQ(x) -> Min(., 0) -> Q -> DQ -> Mul(., a - 1) -> ...
    =>  Min(x codes, x's zero code) -> DQ -> depthwise Conv(., a - 1) -> ..."""
    dq_x = G.made_by(node.input[0], "DequantizeLinear")
    q_x = G.made_by(dq_x.input[0], "QuantizeLinear") if dq_x is not None else None
    q_neg = G.only_consumer(node.output[0], "QuantizeLinear")
    dq_neg = G.only_consumer(q_neg.output[0], "DequantizeLinear") if q_neg is not None else None
    mul = G.only_consumer(dq_neg.output[0], "Mul") if dq_neg is not None else None
    if q_x is None or mul is None or node.input[1] not in G.init or np.any(G.value(node.input[1]) != 0):
        return False
    dq_slope = G.made_by(next(i for i in mul.input if i != dq_neg.output[0]), "DequantizeLinear")
    if dq_slope is None or G.only_consumer(dq_slope.output[0], "Mul") is not mul:
        return False
    slope = float_values.get(dq_slope.input[0].removesuffix("_quantized"))
    if slope is None or not G.mul_to_depthwise_conv(mul, dq_neg.output[0], dq_slope, slope):
        return False
    # Min's output is coded exactly like x (its own Q node goes, the DQ reading it takes x's scale).
    for k in (1, 2):
        dq_neg.input[k] = q_x.input[k]
    x_zero = G.add_initializer(node.name + "_zero_u8", np.array([G.value(q_x.input[2])], np.uint8))
    G.replaced[id(node)] = helper.make_node("Min", [q_x.output[0], x_zero], [q_neg.output[0]], name=node.name + "_u8")
    G.replaced[id(q_neg)] = None
    return True


def keep_prelu_in_uint8(model: onnx.ModelProto, prelu_nodes: list[str], float_model: onnx.ModelProto) -> int:
    """Rewrite, in place, the quantized PRelu layers of `model` (quantized from `float_model`,
    whose prelu.py node names are `prelu_nodes`); returns how many layers were rewritten."""
    G = _Graph(model)
    float_values = {i.name: numpy_helper.to_array(i) for i in float_model.graph.initializer}
    wanted = set(prelu_nodes)
    done = sum(_rewrite(G, n, float_values) for n in list(model.graph.node) if n.name in wanted and n.op_type == "Min")
    G.commit()
    onnx.checker.check_model(model)
    return done
