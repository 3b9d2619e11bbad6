"""The liveness step of `models build`: liveness.fp32.onnx and liveness.int8.onnx.

Run after the face models, and on its own when only it is missing or stale, so adding it to a
models folder costs seconds rather than a re-quantization of the embedders. Both files are
added to models.json; each pack runs the one of its precision (`liveness_file`), and each
pack's fingerprint then covers it. The int8 file is quantized with the calibration table's
liveness ranges (table.py), measured by `models calibrate` on `calibration_blobs`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

from edge.modelpack import quantize as qz
from edge.modelpack.calibration import calibration_frames, photos_fingerprint
from edge.modelpack.errors import ModelBuildError
from edge.modelpack.fetch import fetch_files, sha256_bytes
from edge.modelpack.manifest import Source
from edge.modelpack.table import CalibrationTable, graph_sha256
from edge.modelpack.versions import LIVENESS_BUILD_VERSION, pack_fingerprint

ROLE = "liveness"
INPUT = {"shape": [1, 3, 128, 128], "layout": "NCHW", "colour": "BGR", "normalisation": "none: raw 0-255",
         "note": "Silent-Face crop: detector box x2.7 about its centre, capped and shifted inside the frame; "
                 "softmax of the 3 outputs, p0 = live"}
# How both liveness files are made from the source: inner channels padded to blocks of 16 and
# PRelu in its Relu form (pad.py, prelu.py), so that ONNX Runtime's fast x86 kernels run every
# layer: measured side by side after the face pipeline, on one thread, 0.53x the time in int8
# and 0.54x in fp32, the fp32 scores unchanged. The int8 one is then
# quantized as the embedders are (qz.RECIPE), apart from the PRelu layers.
RECIPE = {**qz.RECIPE,
          "prelu": "x + Relu((a - 1) * x) (prelu.py unfold_prelu_as_relu): QLinearConv with its Relu fused, QLinearAdd",
          "channels": "inner channels zero-padded to multiples of 16 (pad.py)"}


# Which liveness model each pack runs: its own precision. Measured by `bench liveness`: the int8
# version keeps the AUCs (print 0.998, replay 0.998 against 0.997) and the error rates at the
# shipped threshold, and runs faster than fp32 (about 0.8x).
def liveness_file(pack: str) -> str:
    return "liveness.int8.onnx" if pack.startswith("int8") else "liveness.fp32.onnx"


def add_liveness(packs: dict[str, dict], entries: dict[str, dict]) -> dict[str, dict]:
    """Each pack runs the liveness file of its precision, and its fingerprint covers it."""
    for name, pack in packs.items():
        pack["files"][ROLE] = liveness_file(name)
        pack["fingerprint"] = pack_fingerprint(pack["files"], entries, pack.get("embedding"))
    return packs


def prepare(data: bytes, log) -> tuple:
    """The float graph of both liveness files from the source bytes: opset 13, inner channels
    padded, PRelu in its Relu form; with its rewritten PRelu nodes and the nodes kept float in int8."""
    from edge.modelpack.convert import upgrade
    from edge.modelpack.pad import BLOCK, pad_channels
    from edge.modelpack.prelu import unfold_prelu_as_relu

    fp32 = upgrade(data, ROLE)
    log(f"liveness: {pad_channels(fp32)} inner tensors padded to multiples of {BLOCK} channels")
    prelu_nodes = unfold_prelu_as_relu(fp32)
    return fp32, prelu_nodes, qz.edge_layers(fp32, output_end=True)


def build_liveness(models_dir: Path, sources: list[Source], cache_dir: Path, meta: dict, log,
                   table: CalibrationTable) -> dict:
    """Builds the liveness models into `models_dir` and records them in its models.json."""
    import json

    raw = fetch_files(sources, cache_dir, log, roles={ROLE})
    if ROLE not in raw:
        raise ModelBuildError(f"the manifest has no source for role {ROLE!r}")
    data, src, member = raw[ROLE]
    fp32, prelu_nodes, keep = prepare(data, log)
    fp32_bytes = fp32.SerializeToString()
    log(f"liveness: quantizing with the ranges of {table.path.name} (no calibration inference)")
    try:
        int8 = qz.quantize_from_ranges(fp32, table.ranges(ROLE, graph_sha256(fp32_bytes)), keep)
    except ValueError as exc:
        raise ModelBuildError(f"{table.path}: {ROLE}: {exc}; re-measure with "
                              "`edge-verifier models calibrate`") from None
    entry = table.models[ROLE]
    source = {"package": src.package, "registry": src.registry, "version": src.version, "file": member,
              "sha256": sha256_bytes(data), "license": src.license}
    built = {
        "liveness.fp32.onnx": (fp32_bytes, {}),
        "liveness.int8.onnx": (int8, {"quantization": {
            **RECIPE, "kept_float": keep, "prelu_layers": len(prelu_nodes) // 3,
            "calibration_set": entry.calibration_set, "calibration_crops": entry.calibration_crops,
            "photos": photos_fingerprint(sources), "calibration_table": table.sha256}}),
    }
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".build-") as tmp:
        for file, (blob, extra) in built.items():
            (Path(tmp) / file).write_bytes(blob)
            sha = sha256_bytes(blob)
            meta["models"][file] = {"role": ROLE, "precision": file.split(".")[1], "sha256": sha,
                                    "fingerprint": sha[:16], "input": INPUT, "source": source,
                                    "build_version": LIVENESS_BUILD_VERSION, **extra}
            log(f"wrote {file} ({len(blob) / 1e6:.1f} MB)")
        add_liveness(meta["packs"], meta["models"])
        for file in built:
            shutil.move(str(Path(tmp) / file), models_dir / file)
        (models_dir / "models.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def calibration_blobs(photos: list[tuple[str, bytes]], detector_path: Path, log) -> tuple[str, list[np.ndarray]]:
    """For `models calibrate`: the best-scored face of each calibration frame (the embedders'
    frames), cropped and fed as the pipeline feeds them. One face per frame, not every face of the group photos: that
    calibrated worse (`bench liveness` on the unpadded graph, int8 per frame: BPCER 6.2 % against
    4.2 %, APCER of prints 1.25 % against 0.77 %)."""
    from edge.vision.detector import FaceDetector
    from edge.vision.liveness import LivenessNet
    from edge.vision.runtime import make_session

    name, frames = calibration_frames(photos)
    det = FaceDetector(make_session(detector_path))
    blobs = []
    for i, frame in enumerate(frames):
        boxes = det.infer(frame)
        if len(boxes):
            x1, y1, x2, y2 = (float(v) for v in boxes[0, :4])
            blobs.append(LivenessNet.input_blob(frame, (x1, y1, max(x2 - x1, 1.0), max(y2 - y1, 1.0))))
        if (i + 1) % 20 == 0:
            log(f"liveness calibration crops: {i + 1}/{len(frames)} photos")
    if len(blobs) < 16:
        raise ModelBuildError(f"calibration set {name!r} gave only {len(blobs)} liveness crops")
    log(f"liveness calibration: {len(blobs)} crops of {name}")
    return name, blobs
