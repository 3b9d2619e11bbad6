"""`edge-verifier models calibrate`: the int8 activation ranges, measured on this machine.

The calibration build 9 ran inside every build, now run on its own: the manifest's calibration
photos, their crops made by the fp32 detector and landmarks just converted (calibration.py,
liveness.calibration_blobs), ORT's histogram calibrator at the 99.999th percentile over them
(quantize.measure). The result goes to the committed calibration table (table.py); `models
build` quantizes from that table.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from edge.modelpack import quantize as qz
from edge.modelpack import table as tb
from edge.modelpack.build import EMBEDDERS, INPUTS, Staging, _convert, embedder_keep_float
from edge.modelpack.calibration import build_calibration_set
from edge.modelpack.errors import ModelBuildError
from edge.modelpack.fetch import fetch_calibration_photos, fetch_files
from edge.modelpack.liveness import ROLE as LIVENESS
from edge.modelpack.liveness import calibration_blobs, prepare
from edge.modelpack.manifest import Source


def measure_ranges(sources: list[Source], cache_dir: Path, log) -> dict:
    """Calibrate every int8 model of the manifest as build 9 calibrated at build time; returns
    role -> table.ModelRanges. Each model is also quantized twice, by ORT's quantize_static straight
    from its calibrator and by quantize.quantize_from_ranges from the ranges as the table writes and
    reads them: the two must give the same bytes, or the table would not reproduce the calibration."""
    import onnx

    from edge.vision.embedder import Embedder

    raw = fetch_files(sources, cache_dir, log, roles=set(INPUTS) | {LIVENESS})
    missing = (set(INPUTS) | {LIVENESS}) - raw.keys()
    if missing:
        raise ModelBuildError(f"the manifest has no source for role(s) {sorted(missing)}")
    photos = fetch_calibration_photos(sources, cache_dir, log)
    measured: dict[str, tb.ModelRanges] = {}

    def one(role: str, graph: onnx.ModelProto, blobs: list[np.ndarray], keep: list[str], name: str) -> None:
        ranges, by_ort = qz.measure(graph, blobs, keep, log)
        text = tb.dumps("check", {}, {r: tb.ModelRanges("0" * 64, "", 0, ranges) for r in tb.ROLES})
        read = {k: tuple(v) for k, v in json.loads(text)["models"][role]["tensors"].items()}
        if read != ranges or qz.quantize_from_ranges(graph, read, keep) != by_ort:
            raise ModelBuildError(f"{role}: quantizing from the written ranges does not reproduce quantize_static's "
                                  "model: the table would not be exact")
        log(f"{role}: {len(ranges)} tensor ranges; quantizing from them reproduces quantize_static byte for byte")
        measured[role] = tb.ModelRanges(tb.graph_sha256(graph.SerializeToString()), name, len(blobs), ranges)

    with tempfile.TemporaryDirectory(prefix="edge-calibrate-") as tmp:
        staged = Staging(Path(tmp))
        to_quantize = _convert({role: raw[role] for role in INPUTS}, staged)
        detector = staged.folder / "detector.fp32.onnx"
        calib = build_calibration_set(photos, detector, staged.folder / "landmarks.fp32.onnx", log)
        log(f"calibration set: {calib.name}: {len(calib.crops)} aligned crops")
        for role in EMBEDDERS.values():
            blobs = [Embedder.input_blob(c, INPUTS[role]["mean"], INPUTS[role]["std"]) for c in calib.crops]
            source, _ = to_quantize[role]
            log(f"{role}: calibrating")
            one(role, source, blobs, embedder_keep_float(role, source), calib.name)
        fp32, _, keep = prepare(raw[LIVENESS][0], log)
        name, blobs = calibration_blobs(photos, detector, log)
        log(f"{LIVENESS}: calibrating")
        one(LIVENESS, fp32, blobs, keep, name)
    return measured


def machine() -> dict:
    """What the ranges were measured on: the CPU and the libraries whose arithmetic made them."""
    import datetime
    import platform
    from importlib.metadata import version

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    simd = [f for f in ("SSE42", "AVX", "FMA3", "AVX2", "AVX512F", "AVX512_SKX", "ASIMD", "ASIMDHP", "SVE")
            if features.get(f)]
    return {"cpu": cpu, "arch": platform.machine(), "simd": simd,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
            "onnxruntime": version("onnxruntime"), "numpy": version("numpy"),
            "opencv": version("opencv-python-headless")}
