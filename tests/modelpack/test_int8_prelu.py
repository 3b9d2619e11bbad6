"""int8_prelu.py: quantized PRelu layers run on uint8 codes, fused by ONNX Runtime, same numbers."""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.modelpack import quantize as qz
from edge.modelpack.int8_prelu import keep_prelu_in_uint8
from edge.modelpack.prelu import unfold_prelu
from tests.modelpack.onnx_graphs import optimized_ops, run_graph


def _conv_prelu_conv(channels: int = 8) -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (channels, 3, 3, 3)).astype(np.float32), "w0"),
        numpy_helper.from_array(rng.normal(0, 0.3, (channels, channels, 3, 3)).astype(np.float32), "w1"),
        numpy_helper.from_array(rng.normal(0, 0.3, (channels, channels, 1, 1)).astype(np.float32), "w2"),
        numpy_helper.from_array(rng.uniform(-1.5, 2.0, (channels, 1, 1)).astype(np.float32), "slope"),
        numpy_helper.from_array(rng.normal(0, 0.1, channels).astype(np.float32), "b1"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c0", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("PRelu", ["c1", "slope"], ["p1"], name="act1"),
        helper.make_node("Conv", ["p1", "w2"], ["y"], name="conv2"),
    ]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, channels, 16, 16])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_prelu_runs_fused_on_uint8_codes_with_the_same_result(tmp_path):
    source = _conv_prelu_conv()
    prelu_nodes = unfold_prelu(source, for_int8=True)
    rng = np.random.default_rng(2)
    calib = [rng.normal(size=(1, 3, 16, 16)).astype(np.float32) for _ in range(32)]
    plain = onnx.load_from_string(qz.quantize(source, calib, ["conv0"], lambda msg: None))
    rewritten = onnx.load_from_string(plain.SerializeToString())

    assert keep_prelu_in_uint8(rewritten, prelu_nodes, source) == 1
    # Before: the PRelu's Min runs in float between a DQ and a Q. After: it reads the uint8 codes,
    # the Mul is a depthwise QLinearConv, the Add a QLinearAdd, and no float detour is left.
    before, after = optimized_ops(plain, tmp_path), optimized_ops(rewritten, tmp_path)
    assert before[before.index("Min") - 1] == "DequantizeLinear" and before[before.index("Min") + 1] == "QuantizeLinear"
    assert after.count("DequantizeLinear") == before.count("DequantizeLinear") - 1
    assert after.count("QuantizeLinear") == before.count("QuantizeLinear") - 1
    assert "Mul" not in after and "Add" not in after and {"QLinearAdd", "Min"} <= set(after)
    assert after.count("QLinearConv") == before.count("QLinearConv") + 1
    min_node = next(n for n in rewritten.graph.node if n.op_type == "Min")
    bound = next(i for i in rewritten.graph.initializer if i.name == min_node.input[1])
    assert numpy_helper.to_array(bound).dtype == np.uint8

    # Same numbers up to rounding: cosine to the plainly quantized model, and no further from fp32
    # than it. How far int8 itself is from fp32 depends on the CPU ONNX Runtime runs on: x86
    # without VNNI adds u8 x s8 pairs in saturating int16 (cosine 0.89 on AVX2-only x86, above 0.98
    # with VNNI or on ARM), so a fixed bound against fp32 would test the machine, not the rewrite.
    for x in (rng.normal(size=(1, 3, 16, 16)).astype(np.float32) for _ in range(5)):
        reference, quantized, ours = (run_graph(g, x).ravel() for g in (source, plain, rewritten))
        cos = lambda a, b: float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))  # noqa: E731
        assert cos(ours, quantized) > 0.995
        assert cos(ours, reference) > cos(quantized, reference) - 0.005


def test_built_int8_embedders_run_in_int8_but_for_the_layers_kept_float(models_dir, tmp_path):
    meta = json.loads((models_dir / "models.json").read_text())
    for role, layers in (("embedder", 27), ("embedder-lite", 33)):
        kept = set(meta["models"][f"{role}.int8.onnx"]["quantization"]["kept_float"])
        optimized_ops(onnx.load(models_dir / f"{role}.int8.onnx"), tmp_path)
        optimized = onnx.load(tmp_path / "optimized.onnx").graph.node
        ops = [n.op_type for n in optimized]
        convs = [n.name for n in onnx.load(models_dir / f"{role}.fp32.onnx").graph.node if n.op_type == "Conv"]
        # SFace has 27 PRelu layers, the 512-d network 33, all on codes: a Min and a depthwise
        # QLinearConv per layer. Every convolution not kept float runs as a QLinearConv, and the
        # only float arithmetic left is in the kept layers (ORT did not quantize them after all).
        assert ops.count("Min") == layers, role
        assert ops.count("QLinearConv") == len([c for c in convs if c not in kept]) + layers, role
        assert {n.name for n in optimized if n.op_type in ("Conv", "Gemm", "MatMul", "Mul", "Add")} <= kept, role
        assert "QLinearMul" not in ops, role
