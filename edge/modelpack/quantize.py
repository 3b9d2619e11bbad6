"""Static int8 QDQ quantization with onnxruntime.quantization, in two separate halves.

`measure` is today's calibration (ORT's histogram calibrator, the 99.999th percentile, run on the
calibration inputs): `edge-verifier models calibrate` runs it once on a maintainer's machine and
commits the ranges (models/calibration.json, table.py). `quantize_from_ranges` is what `models
build` runs: ORT's QDQ quantizer built from those ranges exactly as quantize_static builds it from
its calibrator's, so no calibration input is ever run through a network while building. The int8
bytes are then a function of the graph, the table and the pinned quantizer alone: the fp32
inference that calibration is made of rounds differently on another instruction set (FMA or not,
AVX-512 or AVX2 or NEON blocking), which moved the ranges and with them every int8 file.

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

PERCENTILE = 99.999  # of the calibration activations, each side: the range of a tensor
RECIPE = {
    "format": "QDQ",
    "weights": "int8 per-channel",
    "activations": "uint8",
    "calibration": f"percentile {PERCENTILE}",
    "calibration_batch": 16,
    "ranges": "the committed calibration table (models calibrate); no calibration inference at build time",
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


# What quantize_static is called with (build 9 called it so, with a calibration reader).
EXTRA_OPTIONS = {"CalibPercentile": PERCENTILE, "CalibMovingAverage": False}


def _op_types() -> list[str]:
    """Every op type ORT can quantize, as quantize_static takes them when given none."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QLinearOpsRegistry) | set(QDQRegistry))


def pre_process(model: onnx.ModelProto, folder: Path) -> Path:
    """ORT's quantization pre-processing (its BASIC graph optimisation: Conv+BatchNorm and
    MatMul+BatchNorm folds, Dropout removal, constant folding of shape arithmetic; then ONNX shape
    inference), written to `folder`/pre.onnx. The folds it computes are element-wise IEEE
    operations (add, sqrt, div, mul, sub), which round the same way on every CPU: `models build
    --emulate` checks the result on other instruction sets."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    src, pre = folder / "src.onnx", folder / "pre.onnx"
    onnx.save(model, src)
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
    return pre


def measure(model: onnx.ModelProto, blobs: list[np.ndarray], keep_float: list[str],
            log: Callable[[str], None]) -> tuple[dict[str, tuple[float, float]], bytes]:
    """Calibrate `model` on `blobs` as build 9 did (quantize_static, percentile histograms fed
    RECIPE["calibration_batch"] inputs at a time): the activation range [min, max] of every
    calibrated tensor (float32 values, as Python floats) and quantize_static's own int8 model."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import load_tensors_data

    input_name = model.graph.input[0].name
    with tempfile.TemporaryDirectory() as tmp:
        pre, out, cache = pre_process(model, Path(tmp)), Path(tmp, "out.onnx"), Path(tmp, "ranges.json")
        log(f"calibrating on {len(blobs)} inputs (this takes a minute)")
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
                extra_options=dict(EXTRA_OPTIONS),
                calibration_cache_path=str(cache),  # ORT writes the ranges it quantized with here
            )
        ranges = {}
        for name, data in load_tensors_data(cache).items():
            low, high = (np.asarray(v) for v in data.range_value)
            if low.dtype != np.float32 or high.dtype != np.float32:
                raise TypeError(f"{name}: the calibrator's range is {low.dtype}/{high.dtype}, not float32")
            ranges[name] = (float(low), float(high))
        return ranges, out.read_bytes()


def quantize(model: onnx.ModelProto, blobs: list[np.ndarray], keep_float: list[str],
             log: Callable[[str], None]) -> bytes:
    """Calibrate on `blobs` and quantize in one go (quantize_static): build 9's way, for tests
    and for `models calibrate`'s own check; `models build` uses quantize_from_ranges."""
    return measure(model, blobs, keep_float, log)[1]


def calibrated_tensors(model: onnx.ModelProto) -> set[str]:
    """The tensors ORT's calibrator measures in a pre-processed, shape-inferred `model` (its own
    selection, without building the calibration session): the names a range table must cover."""
    from types import SimpleNamespace

    from onnxruntime.quantization.calibrate import CalibraterBase

    tensors, _ = CalibraterBase.select_tensors_to_calibrate(SimpleNamespace(op_types_to_calibrate=_op_types()), model)
    return set(tensors)


def quantize_from_ranges(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]],
                         keep_float: list[str]) -> bytes:
    """The int8 QDQ model of `model` with the given activation ranges: quantize_static's own steps
    after its calibration (ORT 1.32: shape-inferred load, opset check, QDQQuantizer with the
    calibrator's TensorsData), with the TensorsData made from `ranges` instead. Runs no inference.
    `ranges` must name exactly the tensors ORT's calibrator would measure (ValueError otherwise):
    a tensor left out would silently stay float."""
    from onnxruntime.quantization import QuantFormat, QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorData, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer, update_opset_version
    from onnxruntime.quantization.quantize import check_static_quant_arguments

    weight_type, activation_type = QuantType.QInt8, QuantType.QUInt8
    with tempfile.TemporaryDirectory() as tmp:
        pre, out = pre_process(model, Path(tmp)), Path(tmp, "out.onnx")
        loaded = load_model_with_shape_infer(pre)
        wanted = calibrated_tensors(loaded)
        if set(ranges) != wanted:
            missing, extra = sorted(wanted - set(ranges)), sorted(set(ranges) - wanted)
            raise ValueError(f"the ranges do not name the graph's calibrated tensors ({len(missing)} missing, e.g. "
                             f"{missing[:3]}; {len(extra)} unknown, e.g. {extra[:3]})")
        loaded = update_opset_version(loaded, weight_type, activation_type, tensor_quant_overrides=None, block_size=0)
        tensors = TensorsData(CalibrationMethod.Percentile, {
            name: TensorData(lowest=np.array(low, dtype=np.float32), highest=np.array(high, dtype=np.float32))
            for name, (low, high) in sorted(ranges.items())})
        check_static_quant_arguments(QuantFormat.QDQ, activation_type, weight_type)
        quantizer = QDQQuantizer(loaded, True, False, weight_type, activation_type, tensors, [], list(keep_float),
                                 _op_types(), dict(EXTRA_OPTIONS))
        quantizer.quantize_model()
        quantizer.model.save_model_to_file(str(out), False)
        return out.read_bytes()
