"""The liveness build's graph rewrites (edge/modelpack/pad.py, prelu.unfold_prelu_as_relu) must
compute the same function as the network they rewrite."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.modelpack.pad import pad_channels
from edge.modelpack.prelu import unfold_prelu_as_relu
from tests.modelpack.onnx_graphs import run_graph


def _bottleneck(tail: str = "Add") -> onnx.ModelProto:
    """x (8 ch) -> 1x1 Conv to 13 -> PRelu -> 3x3 depthwise Conv -> PRelu -> 1x1 Conv to 8 -> + x,
    the shape of the liveness network's blocks; `tail` "Pool" ends the widened tensor in a pool."""
    rng = np.random.default_rng(1)

    def const(name, *shape):
        return numpy_helper.from_array(rng.normal(size=shape).astype(np.float32), name)

    slopes = [numpy_helper.from_array(rng.uniform(-0.5, 0.9, size=(13, 1, 1)).astype(np.float32), f"a{i}")
              for i in (1, 2)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["h1"], name="expand", kernel_shape=[1, 1]),
             helper.make_node("PRelu", ["h1", "a1"], ["p1"], name="act1"),
             helper.make_node("Conv", ["p1", "w2", "b2"], ["h2"], name="dw", group=13, kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["h2", "a2"], ["p2"], name="act2")]
    if tail == "Add":
        nodes += [helper.make_node("Conv", ["p2", "w3", "b3"], ["h3"], name="project", kernel_shape=[1, 1]),
                  helper.make_node("Add", ["x", "h3"], ["y"], name="residual")]
        out = [1, 8, 6, 6]
    else:
        nodes += [helper.make_node("GlobalAveragePool", ["p2"], ["y"], name="pool")]
        out = [1, 13, 1, 1]
    graph = helper.make_graph(
        nodes, "bottleneck", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
        [const("w1", 13, 8, 1, 1), const("b1", 13), const("w2", 13, 1, 3, 3), const("b2", 13),
         const("w3", 8, 13, 1, 1), const("b3", 8), *slopes])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


X = np.random.default_rng(0).normal(size=(1, 8, 6, 6)).astype(np.float32)


def test_padded_channels_give_the_same_outputs_and_blocks_of_16():
    model = _bottleneck()
    expected = run_graph(model, X)
    assert pad_channels(model) == 4  # h1, p1, h2, p2
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert weights["w1"].shape == (16, 8, 1, 1) and weights["w2"].shape == (16, 1, 3, 3)
    assert weights["w3"].shape == (8, 16, 1, 1) and weights["a1"].shape == (16, 1, 1)
    assert next(a.i for a in model.graph.node[2].attribute if a.name == "group") == 16
    np.testing.assert_allclose(run_graph(model, X), expected, rtol=1e-5, atol=1e-5)


def test_channels_that_reach_anything_but_a_convolution_are_not_padded():
    model = _bottleneck(tail="Pool")
    before = model.SerializeToString()
    assert pad_channels(model) == 0
    assert model.SerializeToString() == before


def test_prelu_as_relu_gives_the_same_outputs_padded_or_not():
    model = _bottleneck()
    expected = run_graph(model, X)
    created = unfold_prelu_as_relu(model)
    assert len(created) == 6 and all(n.op_type != "PRelu" for n in model.graph.node)
    np.testing.assert_allclose(run_graph(model, X), expected, rtol=1e-5, atol=1e-5)
    padded = _bottleneck()
    pad_channels(padded)
    unfold_prelu_as_relu(padded)
    np.testing.assert_allclose(run_graph(padded, X), expected, rtol=1e-5, atol=1e-5)


def test_prelu_with_a_slope_above_1_is_left_alone():
    model = _bottleneck()
    slope = next(i for i in model.graph.initializer if i.name == "a1")
    slope.CopyFrom(numpy_helper.from_array(np.full((13, 1, 1), 1.5, np.float32), "a1"))
    expected = run_graph(model, X)
    unfold_prelu_as_relu(model)
    assert [n.name for n in model.graph.node if n.op_type == "PRelu"] == ["act1"]
    np.testing.assert_allclose(run_graph(model, X), expected, rtol=1e-5, atol=1e-5)
