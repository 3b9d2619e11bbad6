"""The build's PRelu rewrite (edge/modelpack/prelu.py) must compute the same function."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.modelpack.prelu import unfold_prelu
from tests.modelpack.onnx_graphs import run_graph


def _prelu_model(slope: np.ndarray) -> onnx.ModelProto:
    graph = helper.make_graph(
        [helper.make_node("PRelu", ["x", "slope"], ["y"], name="act")],
        "prelu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, len(slope), 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, len(slope), 5, 5])],
        [numpy_helper.from_array(slope.reshape(-1, 1, 1).astype(np.float32), "slope")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


@pytest.mark.parametrize(
    "slope",
    [np.array([0.25, -0.5, 1.0, 0.0]), np.array([1.5, 9.0, 1.0]), np.array([-9.4, 0.1, 8.9, 1.2])],
    ids=["slopes-at-most-1", "slopes-at-least-1", "mixed-slopes"],
)
@pytest.mark.parametrize("for_int8", [False, True], ids=["fp32-form", "int8-form"])
def test_rewritten_prelu_gives_the_same_outputs_and_no_prelu_is_left(slope, for_int8):
    x = np.random.default_rng(0).normal(size=(1, len(slope), 5, 5)).astype(np.float32)
    original = _prelu_model(slope)
    expected = run_graph(original, x)
    rewritten = _prelu_model(slope)
    created = unfold_prelu(rewritten, for_int8=for_int8)
    assert created and all(n.op_type != "PRelu" for n in rewritten.graph.node)
    np.testing.assert_allclose(run_graph(rewritten, x), expected, rtol=1e-6, atol=1e-6)
