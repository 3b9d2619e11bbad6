"""The calibration table, models/calibration.json: the int8 activation ranges `models build` quantizes with.

Measured by `edge-verifier models calibrate` (a maintainer's command: the manifest's calibration
photos, their crops made by the fp32 detector and landmarks, ORT's histogram calibrator at the
99.999th percentile, as build 9 did at every build) and committed. `models build` reads it and
runs no calibration inference, so the int8 bytes depend on the manifest, this table and the
pinned quantizer alone, whatever the CPU.

Why a committed table rather than rounding the measured ranges to a coarse grid on every
machine: a range that falls near a grid boundary still flips to the neighbouring value when the
building CPU rounds the fp32 inference differently, and then one scale and the whole file's hash
change. A table is read, not re-measured: it cannot flip.

Layout (JSON, written one tensor per line so that a re-measurement reads as a diff):

    {"format": 1, "recipe": {...}, "photos": <manifest photos fingerprint>,
     "measured": {"machine", "cpu", "date", "onnxruntime", "numpy", "opencv"},
     "models": {<role>: {"graph": <sha256 of the float graph quantized>, "calibration_set": ...,
                         "calibration_crops": N, "tensors": {<tensor>: [min, max], ...}}}}

Every min and max is a float32 value written as the shortest decimal that reads back as the
same double, which is that float32 exactly; anything else is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.modelpack.errors import ModelBuildError

TABLE_FORMAT = 1
TABLE_NAME = "calibration.json"
ROLES = ("embedder", "embedder-lite", "liveness")  # the models quantized to int8
# How the ranges were measured: recorded in the table, compared at build time.
RECIPE = {
    "calibrator": "onnxruntime HistogramCalibrater, percentile 99.999 (symmetric, 2048 bins), "
                  "16 inputs per collect call",
    "embedder crops": "every face of each calibration frame, aligned as the pipeline aligns (calibration.py)",
    "liveness crops": "the best-scored face of each calibration frame, as the pipeline crops it (liveness.py)",
    "frames": "each photo, its mirror image, 2 seeded variants of each (calibration.py)",
}


@dataclass(frozen=True)
class ModelRanges:
    graph: str  # sha256 of the float graph (before pre-processing) the ranges were measured on
    calibration_set: str
    calibration_crops: int
    tensors: dict[str, tuple[float, float]]


@dataclass(frozen=True)
class CalibrationTable:
    path: Path
    sha256: str  # of the file: recorded in every int8 entry, a changed table rebuilds them
    photos: str
    measured: dict
    models: dict[str, ModelRanges]

    def ranges(self, role: str, graph: str) -> dict[str, tuple[float, float]]:
        """The ranges of `role`, which must have been measured on this very float graph."""
        entry = self.models[role]
        if entry.graph != graph:
            raise ModelBuildError(
                f"{self.path}: the {role} ranges were measured on another graph ({entry.graph[:16]}, this build "
                f"quantizes {graph[:16]}): the conversion changed; re-measure with `edge-verifier models calibrate`")
        return entry.tensors


def default_table(manifest_path: Path) -> Path:
    """The table that belongs to a manifest: calibration.json beside it, else the repository's
    (models/calibration.json). Either way the build checks that it was measured on the manifest's
    photos and on the very graphs it quantizes."""
    own = Path(manifest_path).with_name(TABLE_NAME)
    if own.is_file():
        return own
    return Path(__file__).resolve().parents[2] / "models" / TABLE_NAME


def graph_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _is_float32(value) -> bool:
    return (isinstance(value, float) and math.isfinite(value)
            and float(np.float32(value)) == value)


def load_table(path: Path, photos: str | None = None) -> CalibrationTable:
    """The validated table at `path` (ModelBuildError saying what is wrong and what to run).
    With `photos`, the manifest's photos fingerprint, the table must have been measured on them."""
    path = Path(path)
    redo = "run `edge-verifier models calibrate` to measure it"
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelBuildError(f"calibration table not found: {path} ({redo}, or pass --calibration)") from None
    except OSError as exc:
        raise ModelBuildError(f"calibration table {path} unreadable: {exc} ({redo})") from None
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise ModelBuildError(f"calibration table {path} is not JSON: {exc} ({redo})") from None

    def bad(what: str) -> ModelBuildError:
        return ModelBuildError(f"calibration table {path}: {what} ({redo})")

    if not isinstance(raw, dict) or raw.get("format") != TABLE_FORMAT:
        raise bad(f"not a table of format {TABLE_FORMAT}")
    if raw.get("recipe") != RECIPE:
        raise bad("measured with another recipe than this build's")
    if not isinstance(raw.get("photos"), str) or not isinstance(raw.get("models"), dict):
        raise bad("no photos fingerprint or no models")
    models = {}
    for role in ROLES:
        entry = raw["models"].get(role)
        if not isinstance(entry, dict):
            raise bad(f"no ranges for {role}")
        tensors = entry.get("tensors")
        if not isinstance(tensors, dict) or not tensors:
            raise bad(f"{role}: no tensors")
        ranges = {}
        for name, pair in tensors.items():
            if not (isinstance(pair, list) and len(pair) == 2 and all(_is_float32(v) for v in pair)):
                raise bad(f"{role}: {name}: {pair!r} is not [min, max] of two finite float32 values")
            if pair[0] > pair[1]:
                raise bad(f"{role}: {name}: min {pair[0]!r} > max {pair[1]!r}")
            ranges[name] = (pair[0], pair[1])
        graph, crops = entry.get("graph"), entry.get("calibration_crops")
        if not isinstance(graph, str) or len(graph) != 64 or not isinstance(crops, int):
            raise bad(f"{role}: no graph sha256 or crop count")
        models[role] = ModelRanges(graph, str(entry.get("calibration_set", "")), crops, ranges)
    if photos is not None and raw["photos"] != photos:
        raise ModelBuildError(
            f"calibration table {path} was measured on other calibration photos (fingerprint {raw['photos']}) "
            f"than the manifest lists ({photos}): {redo} again")
    return CalibrationTable(path, hashlib.sha256(data).hexdigest(), raw["photos"],
                            raw.get("measured", {}), models)


def table_sha256(path: Path) -> str | None:
    """The file's sha256, or None when there is none (then no int8 entry is current)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _number(value: float) -> str:
    if not _is_float32(value):
        raise ValueError(f"{value!r} is not a finite float32 value")
    return repr(value)


def dumps(photos: str, measured: dict, models: dict[str, ModelRanges]) -> str:
    """The table's text: stable key order, one tensor per line, exact float32 values."""
    head = json.dumps({"format": TABLE_FORMAT, "recipe": RECIPE, "photos": photos, "measured": measured},
                      indent=2)[:-2]  # without the closing brace: the models follow
    parts = []
    for role in ROLES:
        m = models[role]
        tensors = ",\n".join(f"        {json.dumps(name)}: [{_number(lo)}, {_number(hi)}]"
                             for name, (lo, hi) in sorted(m.tensors.items()))
        parts.append(f'    {json.dumps(role)}: {{\n'
                     f'      "graph": {json.dumps(m.graph)},\n'
                     f'      "calibration_set": {json.dumps(m.calibration_set)},\n'
                     f'      "calibration_crops": {m.calibration_crops},\n'
                     f'      "tensors": {{\n{tensors}\n      }}\n    }}')
    return head + ',\n  "models": {\n' + ",\n".join(parts) + "\n  }\n}\n"


def uint8_params(low: float, high: float) -> tuple[int, float]:
    """The uint8 zero point and scale ORT's quantizer gives an activation of range [low, high]."""
    from onnx import TensorProto
    from onnxruntime.quantization.quant_utils import compute_scale_zp, get_qmin_qmax_for_qType

    qmin, qmax = get_qmin_qmax_for_qType(TensorProto.UINT8)
    zero, scale = compute_scale_zp(np.array(low, np.float32), np.array(high, np.float32), qmin, qmax)
    return int(zero), float(scale)


def drift(committed: CalibrationTable, fresh: dict[str, ModelRanges]) -> dict:
    """How far freshly measured ranges are from the committed ones, per model: the largest change
    of a bound relative to the committed range's width, and how many tensors' uint8 scale or zero
    point would differ (each such tensor would change the int8 file)."""
    out = {}
    for role in ROLES:
        old, new = committed.models[role].tensors, fresh[role].tensors
        common = sorted(set(old) & set(new))
        rel, scale_differs, zero_differs, differs = 0.0, 0, 0, 0
        for name in common:
            (a, b), (c, d) = old[name], new[name]
            width = max(b - a, np.finfo(np.float32).tiny)
            rel = max(rel, abs(c - a) / width, abs(d - b) / width)
            (z0, s0), (z1, s1) = uint8_params(a, b), uint8_params(c, d)
            scale_differs += s0 != s1
            zero_differs += z0 != z1
            differs += (s0, z0) != (s1, z1)
        out[role] = {
            "tensors": len(common),
            "same_graph": committed.models[role].graph == fresh[role].graph,
            "only_committed": len(set(old) - set(new)), "only_fresh": len(set(new) - set(old)),
            "identical_ranges": sum(old[n] == new[n] for n in common),
            "max_relative_change": float(f"{rel:.3g}"),
            "tensors_whose_uint8_params_differ": differs,
            "scale_differs": scale_differs, "zero_point_differs": zero_differs,
            "calibration_crops": {"committed": committed.models[role].calibration_crops,
                                  "fresh": fresh[role].calibration_crops},
        }
    return out
