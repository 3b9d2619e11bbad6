"""Running small hand-made ONNX graphs in the model-build tests: once, and as ONNX Runtime
optimises them (what it folds or fuses is what several build steps are for)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

LEVELS = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
          "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


def run_graph(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    """The graph's first output for its input "x"."""
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def optimized_ops(model: onnx.ModelProto, tmp_path: Path, level: str = "extended") -> list[str]:
    """The op types of the graph ONNX Runtime runs at `level`; it is kept as tmp_path/optimized.onnx."""
    opts = ort.SessionOptions()
    opts.graph_optimization_level = LEVELS[level]
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
