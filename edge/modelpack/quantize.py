"""Static int8 QDQ quantization with onnxruntime.quantization.

Per-channel int8 weights, uint8 activations, ranges from a percentile of the calibration
activations (min/max lets a few outliers stretch the range and costs accuracy). The first
convolution (sees the pixels) stays in float with whatever sits before it, and so, where it is
cheap, does the final embedding projection with whatever follows it (`edge_layers`): they are
the layers whose rounding error moves the embedding most. The element-wise
nodes that replace PRelu (prelu.py) are quantized too, and int8_prelu.py then rewrites them so
that ONNX Runtime runs them on uint8 codes instead of in float between DQ and Q.
"""

from __future__ import annotations

import contextlib
import itertools
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import onnx

RECIPE = {
    "format": "QDQ",
    "weights": "int8 per-channel",
    "activations": "uint8",
    "calibration": "percentile 99.999",
    "calibration_batch": 16,
    "prelu": "Min/Mul/Add (prelu.py) on uint8 codes: Min, depthwise QLinearConv, QLinearAdd (int8_prelu.py)",
}


def edge_layers(model: onnx.ModelProto, output_end: bool = True) -> list[str]:
    """Names of the nodes kept in float: the input end up to the first convolution and, with
    `output_end`, everything from the last weighted layer (the embedding projection) on.

    Whole ends, not just the two layers: ONNX Runtime quantizes a float Conv or Gemm by itself
    at session start when a DequantizeLinear feeds it and a QuantizeLinear reads it, so a layer
    between quantized neighbours would not stay float (measured: with only its first and last
    convolutions excluded, SFace ran both in int8, its input Sub/Mul and the BatchNorm after
    them being quantized).
    """
    nodes = [n for n in model.graph.node if n.name]
    weighted = [i for i, n in enumerate(nodes) if n.op_type in ("Conv", "Gemm", "MatMul")]
    if not weighted:
        return []
    kept = nodes[: weighted[0] + 1] + (nodes[weighted[-1]:] if output_end else [])
    return [n.name for n in kept]


class _Reader:
    def __init__(self, name: str, blobs: Iterable[np.ndarray]):
        self._it = iter([{name: b} for b in blobs])

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - required by some ORT versions
        pass


class _Batch:
    def __init__(self, items: list):
        self._it = iter(items)

    def get_next(self):
        return next(self._it, None)


@contextlib.contextmanager
def _histograms_in_batches(size: int):
    """ORT's histogram calibrator keeps every input's activations until the reader ends (14 GB
    for SFace on 182 crops: two builds at once ran this machine out of memory). Its histograms
    accumulate across calls, so it is fed `size` inputs per call: a few GB, the same on every machine."""
    from onnxruntime.quantization.calibrate import HistogramCalibrater

    whole = HistogramCalibrater.collect_data

    def batched(self, reader):
        while batch := list(itertools.islice(iter(reader.get_next, None), size)):
            whole(self, _Batch(batch))

    HistogramCalibrater.collect_data = batched
    try:
        yield
    finally:
        HistogramCalibrater.collect_data = whole


def quantize(model: onnx.ModelProto, blobs: list[np.ndarray], keep_float: list[str],
             log: Callable[[str], None]) -> bytes:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        src, pre, out = Path(tmp, "src.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "out.onnx")
        onnx.save(model, src)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        log(f"quantizing on {len(blobs)} calibration inputs (this takes a minute)")
        # The quantizer prints its histogram settings on stdout, which is reserved for JSON.
        with contextlib.redirect_stdout(sys.stderr), _histograms_in_batches(RECIPE["calibration_batch"]):
            quantize_static(
                str(pre),
                str(out),
                _Reader(input_name, blobs),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                calibrate_method=CalibrationMethod.Percentile,
                nodes_to_exclude=keep_float,
                extra_options={"CalibPercentile": 99.999, "CalibMovingAverage": False},
            )
        return out.read_bytes()
