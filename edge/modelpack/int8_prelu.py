"""Run the PRelu layers of a QDQ-quantized embedder on uint8 codes, so ONNX Runtime fuses them.

For the int8 pack, prelu.py writes every PRelu as y = x + (a - 1) * Min(x, 0). Quantized as they
come from onnxruntime.quantization, those nodes run in float between DequantizeLinear and
QuantizeLinear; measured here (ORT 1.32, one thread, 512-d embedder) that float detour took
2.7 of 5.2 ms, more than all its QLinearConvs together (2.0 ms). This pass removes it:

- Min(x, 0): 0 is coded exactly by x's zero point, and the min of two codes of one scale is the
  code of the min, so with the output coded like x the node runs on the uint8 codes directly.
- Mul by the per-channel constant (a - 1): ORT fuses DQ -> Mul -> Q into QLinearMul only when
  both inputs are of the same 8-bit type, so the constant is re-coded from int8 to uint8 (one
  scale per layer, from its float value).
- Add(x, .): ORT already fuses it into QLinearAdd.

Every tensor keeps its own calibrated range. (The two-node form Max(x, a*x) would need x and y to
share one range on codes, which cost the 512-d embedder 0.26 LFW points; measured.)
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge.modelpack.graph import set_nodes


def _uint8_params(lo: float, hi: float) -> tuple[float, int]:
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # 0 must be exactly representable
    scale = (hi - lo) / 255.0 or 1.0
    return scale, int(np.clip(round(-lo / scale), 0, 255))


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

    def constant_to_uint8(self, dq: onnx.NodeProto, float_values: dict[str, np.ndarray]) -> None:
        """Re-code the constant behind `dq` as uint8 with one scale, from its float value."""
        values = float_values[dq.input[0].removesuffix("_quantized")]
        scale, zp = _uint8_params(float(values.min()), float(values.max()))
        codes = np.clip(np.round(values / scale) + zp, 0, 255).astype(np.uint8)
        base = dq.output[0] + "_u8"
        dq.ClearField("input")
        dq.input.extend([self.add_initializer(base, codes),
                         self.add_initializer(base + "_scale", np.array(scale, np.float32)),
                         self.add_initializer(base + "_zero_point", np.array(zp, np.uint8))])
        for attr in [a for a in dq.attribute if a.name == "axis"]:  # one scale: no axis
            dq.attribute.remove(attr)

    def commit(self) -> None:
        nodes = []
        for n in self.g.node:
            new = self.replaced.get(id(n), n)
            if new is not None:
                nodes.append(new)
        set_nodes(self.g, nodes)


def _rewrite(G: _Graph, node: onnx.NodeProto, float_values: dict[str, np.ndarray]) -> bool:
    """DQ(x) -> Min(., 0) -> Q -> DQ -> Mul(., a - 1) -> ...  =>  Min(x codes, x's zero code) -> ..."""
    dq_x = G.made_by(node.input[0], "DequantizeLinear")
    q_x = G.made_by(dq_x.input[0], "QuantizeLinear") if dq_x is not None else None
    q_neg = G.only_consumer(node.output[0], "QuantizeLinear")
    dq_neg = G.only_consumer(q_neg.output[0], "DequantizeLinear") if q_neg is not None else None
    mul = G.only_consumer(dq_neg.output[0], "Mul") if dq_neg is not None else None
    if q_x is None or mul is None or node.input[1] not in G.init or np.any(G.value(node.input[1]) != 0):
        return False
    dq_slope = G.made_by(next(i for i in mul.input if i != dq_neg.output[0]), "DequantizeLinear")
    if dq_slope is None or dq_slope.input[0].removesuffix("_quantized") not in float_values:
        return False
    # Min's output is coded exactly like x (its own Q node goes, the DQ reading it takes x's scale).
    for k in (1, 2):
        dq_neg.input[k] = q_x.input[k]
    G.constant_to_uint8(dq_slope, float_values)
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
