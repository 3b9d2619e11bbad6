"""`edge-verifier models build`: manifest -> fetched, verified, converted, quantized models.

Output in the models folder: <role>.fp32.onnx, <role>.int8.onnx and models.json, which
describes every file (sha256 fingerprint, input size, normalisation, colour order, source) and
the packs (int8 for the edge, fp32 for a hub that wants it, and their -lite variants), each
with a fingerprint.
The int8 files are quantized from the committed calibration table (models/calibration.json,
beside the manifest; table.py), measured once by `edge-verifier models calibrate`: the build runs
no calibration inference, so its bytes are the same on every CPU.
Two steps, each skipped when its files are current (every entry's source file and sha256, the
quantization recipe, the calibration table's sha256 and the step's build version checked against
the manifest and the disk): the face models (detector, landmarks, embedders; BUILD_VERSION) and
the liveness model (LIVENESS_BUILD_VERSION), so adding or changing one does not re-quantize the
other.
Everything is written to a temporary folder first and moved in at the end, so a failed build
leaves the previous models untouched. A second run re-verifies and does nothing.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from edge.modelpack import quantize as qz
from edge.modelpack.calibration import photos_fingerprint
from edge.modelpack.errors import ModelBuildError
from edge.modelpack.fetch import fetch_files, sha256_bytes, sha256_file
from edge.modelpack.int8_prelu import keep_prelu_in_uint8
from edge.modelpack.liveness import RECIPE as LIVENESS_RECIPE
from edge.modelpack.manifest import Source, load_manifest
from edge.modelpack.prelu import unfold_prelu
from edge.modelpack.table import CalibrationTable, default_table, graph_sha256, load_table, table_sha256
from edge.modelpack.versions import BUILD_VERSION, LIVENESS_BUILD_VERSION, embedder_fingerprint, pack_fingerprint
from edge.vision.packs import MIRROR_MEAN, MIRROR_PACKS, MODELS_FORMAT

__all__ = ["BUILD_VERSION", "LIVENESS_BUILD_VERSION", "build", "default_manifest", "is_up_to_date", "pack_fingerprint"]

ALIGNMENT = "arcface-112-5pt"

# What each role's network expects; recorded in models.json for other runtimes and readers.
# The embedders' input is (rgb - mean) / std.
INPUTS = {
    "detector": {"shape": [1, 3, 240, 320], "layout": "NCHW", "colour": "RGB", "normalisation": "(x - 127) / 128",
                 "note": "letterboxed frame; outputs decoded corner boxes relative to the input"},
    "landmarks": {"shape": ["N", 48, 48, 3], "layout": "NWHC (transposed NHWC)", "colour": "RGB",
                  "normalisation": "(x - 127.5) / 128",
                  "note": "square face box; outputs box regression, 5 points, score"},
    "embedder": {"shape": [1, 3, 112, 112], "layout": "NCHW", "colour": "RGB",
                 "normalisation": "none: raw 0-255 (the network computes (x - 127.5) / 128 itself)",
                 "mean": 0.0, "std": 1.0,
                 "note": f"SFace; aligned crop ({ALIGNMENT}); output 128-d, L2-normalised by the pipeline"},
    "embedder-lite": {"shape": [1, 3, 112, 112], "layout": "NCHW", "colour": "RGB", "normalisation": "(x - 127) / 128",
                      "mean": 127.0, "std": 128.0,
                      "note": f"MobileFaceNet-like; aligned crop ({ALIGNMENT}); output 512-d, "
                      "L2-normalised by the pipeline"},
}
# Which embedder each pack runs: the packs' file maps call it "embedder" either way.
EMBEDDERS = {"": "embedder", "-lite": "embedder-lite"}
# Whether the int8 embedder keeps its final projection in float (quantize.edge_layers). The
# 512-d network's is a cheap 1x1 convolution. SFace's is a 25088x128 Gemm, a third of its
# weights: in float it cost 1.6 ms and 50 MB of RSS more per face for the same LFW accuracy
# (99.53 % on the cached crops either way).
FLOAT_PROJECTION = {"embedder": False, "embedder-lite": True}


def _log(msg: str) -> None:
    print(f"[models] {msg}", file=sys.stderr, flush=True)


FACE_MODELS = [f"{role}.{precision}.onnx" for role in INPUTS
               for precision in (("fp32", "int8") if role in EMBEDDERS.values() else ("fp32",))]
LIVENESS_MODELS = ["liveness.fp32.onnx", "liveness.int8.onnx"]


def _read_meta(models_dir: Path) -> dict | None:
    try:
        meta = json.loads((models_dir / "models.json").read_text())
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == MODELS_FORMAT else None


def _entry_is_current(models_dir: Path, name: str, info: dict, sources: list[Source], table: str | None) -> bool:
    """The file on disk is the one recorded, built from the manifest's file for its role (and,
    for an int8 file, quantized from the calibration table whose sha256 is `table`)."""
    wanted = {f.role: (s.package, s.version, f.path, f.sha256) for s in sources for f in s.files}
    src = info.get("source", {})
    if (src.get("package"), src.get("version"), src.get("file"), src.get("sha256")) != wanted.get(info.get("role")):
        return False
    recipe = LIVENESS_RECIPE if info.get("role") == "liveness" else qz.RECIPE
    if info.get("precision") == "int8":
        done = info.get("quantization", {})
        if any(done.get(k) != v for k, v in recipe.items()) or done.get("photos") != photos_fingerprint(sources):
            return False
        if table is None or done.get("calibration_table") != table:
            return False
    path = models_dir / name
    if not path.is_file() or sha256_file(path) != info.get("sha256"):
        _log(f"{name} missing or changed: rebuilding")
        return False
    return True


def _step_is_current(models_dir: Path, meta: dict | None, sources: list[Source], names: list[str],
                     table: Path | None = None) -> bool:
    """Whether the step that makes `names` has nothing to do; `table` is the calibration table the
    int8 files must come from (default: the one beside the folder's manifest)."""
    if meta is None:
        return False
    table_sha = table_sha256(table or default_table(default_manifest(models_dir)))
    models = meta.get("models", {})
    if names is LIVENESS_MODELS:
        version_ok = all(models.get(n, {}).get("build_version") == LIVENESS_BUILD_VERSION for n in names)
    else:
        version_ok = meta.get("built_with", {}).get("build_version") == BUILD_VERSION
    return version_ok and all(n in models and _entry_is_current(models_dir, n, models[n], sources, table_sha)
                              for n in names)


def is_up_to_date(models_dir: Path, sources: list[Source], table: Path | None = None) -> bool:
    meta = _read_meta(models_dir)
    return all(_step_is_current(models_dir, meta, sources, names, table) for names in (FACE_MODELS, LIVENESS_MODELS))


def build(models_dir: Path, manifest_path: Path | None = None, cache_dir: Path | None = None,
          force: bool = False, table_path: Path | None = None) -> dict:
    """Build (or verify) the models; returns the models.json content. `table_path`: the
    calibration table (default: calibration.json beside the manifest)."""
    models_dir = Path(models_dir)
    manifest_path = Path(manifest_path) if manifest_path else default_manifest(models_dir)
    cache_dir = Path(cache_dir) if cache_dir else models_dir / "cache"
    table_path = Path(table_path) if table_path else default_table(manifest_path)
    sources = load_manifest(manifest_path)
    table = load_table(table_path, photos_fingerprint(sources))  # before any work: a clear error if unusable
    meta = _read_meta(models_dir)
    faces_current = not force and _step_is_current(models_dir, meta, sources, FACE_MODELS, table_path)
    if faces_current and _step_is_current(models_dir, meta, sources, LIVENESS_MODELS, table_path):
        assert meta is not None  # _step_is_current is False without one
        _log(f"models in {models_dir} are up to date (all sha256 verified)")
        return _with_current_packs(models_dir, meta)
    if not faces_current:
        meta = _build_face_models(models_dir, manifest_path, sources, cache_dir, table)
    else:
        _log("face models are up to date (all sha256 verified)")
    from edge.modelpack.liveness import build_liveness

    return build_liveness(models_dir, sources, cache_dir, meta, _log, table)


def _with_current_packs(models_dir: Path, meta: dict) -> dict:
    """`meta` with the packs this code makes of its files: a folder built before a pack was added
    (int8-mirror runs the int8 files) gets it without rebuilding any file."""
    from edge.modelpack.liveness import add_liveness

    packs = add_liveness(face_packs(meta["models"]), meta["models"])
    if packs != meta["packs"]:
        meta = {**meta, "packs": packs}
        (models_dir / "models.json").write_text(json.dumps(meta, indent=2) + "\n")
        _log(f"packs of {models_dir} updated: {', '.join(packs)}")
    return meta


def _build_face_models(models_dir: Path, manifest_path: Path, sources: list[Source], cache_dir: Path,
                       table: CalibrationTable) -> dict:
    t0 = time.monotonic()
    raw = fetch_files(sources, cache_dir, _log, roles=set(INPUTS))
    missing = INPUTS.keys() - raw.keys()
    if missing:
        raise ModelBuildError(f"{manifest_path}: no source for role(s) {sorted(missing)}")
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".build-") as tmp:
        staged = Staging(Path(tmp))
        to_quantize = _convert(raw, staged)
        _quantize_embedders(raw, to_quantize, table, photos_fingerprint(sources), staged)
        meta = _models_json(staged.entries, table)
        staged.move_into(models_dir)
        (models_dir / "models.json").write_text(json.dumps(meta, indent=2) + "\n")
    _log(f"done in {time.monotonic() - t0:.0f} s: {models_dir}")
    return meta


class Staging:
    """Built files in a temporary folder with their models.json entries, moved into the models
    folder together at the end (so a failed build leaves the previous models untouched)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.entries: dict[str, dict] = {}

    def add(self, role: str, precision: str, data: bytes, fetched: tuple[bytes, Source, str], input_desc: dict,
            **extra) -> str:
        """Write `data` as <role>.<precision>.onnx, recorded with what it was built from."""
        name = f"{role}.{precision}.onnx"
        (self.folder / name).write_bytes(data)
        self.entries[name] = model_entry(role, precision, data, fetched, input_desc, **extra)
        _log(f"wrote {name} ({len(data) / 1e6:.1f} MB)")
        return name

    def move_into(self, models_dir: Path) -> None:
        for name in self.entries:
            shutil.move(str(self.folder / name), models_dir / name)


def model_entry(role: str, precision: str, data: bytes, fetched: tuple[bytes, Source, str], input_desc: dict,
                **extra) -> dict:
    """The models.json entry of a built file: its hashes, its input, and the fetched file it came from."""
    source_bytes, src, member = fetched
    sha = sha256_bytes(data)
    return {
        "role": role,
        "precision": precision,
        "sha256": sha,
        "fingerprint": sha[:16],
        "input": input_desc,
        "source": {"package": src.package, "registry": src.registry, "version": src.version,
                   "file": member, "sha256": sha256_bytes(source_bytes), "license": src.license},
        **extra,
    }


def _convert(raw: dict[str, tuple[bytes, Source, str]], staged: Staging) -> dict[str, tuple]:
    """Every role converted to opset 13 and staged in fp32; for each embedder, the copy to quantize
    and its PRelu nodes (rewritten in the form int8_prelu runs on uint8 codes)."""
    import onnx

    from edge.modelpack.convert import upgrade

    to_quantize: dict[str, tuple[onnx.ModelProto, list[str]]] = {}
    for role in INPUTS:
        _log(f"converting {role} to opset 13")
        fp32 = upgrade(raw[role][0], role)
        if role in EMBEDDERS.values():
            source = onnx.ModelProto()
            source.CopyFrom(fp32)
            to_quantize[role] = (source, unfold_prelu(source, for_int8=True))
        if role in EMBEDDERS.values() or role == "landmarks":
            # Same function, faster in both packs (embedders ~1.6x); see prelu.py.
            created = unfold_prelu(fp32)
            _log(f"{role}: {len(created)} nodes replace its PRelu layers")
        staged.add(role, "fp32", fp32.SerializeToString(), raw[role], INPUTS[role])
    return to_quantize


def embedder_keep_float(role: str, source) -> list[str]:
    """The nodes of an embedder's graph that stay float in int8 (quantize.edge_layers)."""
    return qz.edge_layers(source, output_end=FLOAT_PROJECTION[role])


def _quantize_embedders(raw: dict[str, tuple[bytes, Source, str]], to_quantize: dict[str, tuple],
                        table: CalibrationTable, photos: str, staged: Staging) -> None:
    """Each embedder quantized to int8 with the table's ranges, its PRelu layers on uint8 codes."""
    import onnx

    for role in EMBEDDERS.values():
        source, prelu_nodes = to_quantize[role]
        keep = embedder_keep_float(role, source)
        _log(f"{role}: quantizing with the ranges of {table.path.name} (no calibration inference)")
        ranges = table.ranges(role, graph_sha256(source.SerializeToString()))
        try:
            int8 = onnx.load_from_string(qz.quantize_from_ranges(source, ranges, keep))
        except ValueError as exc:
            raise ModelBuildError(f"{table.path}: {role}: {exc}; re-measure with "
                              "`edge-verifier models calibrate`") from None
        on_codes = keep_prelu_in_uint8(int8, prelu_nodes, source)
        _log(f"{role}: {on_codes} PRelu layers run on uint8 codes")
        entry = table.models[role]
        staged.add(role, "int8", int8.SerializeToString(), raw[role], INPUTS[role],
                   quantization={**qz.RECIPE, "kept_float": keep, "prelu_layers_on_uint8": on_codes,
                                 "calibration_set": entry.calibration_set,
                                 "calibration_crops": entry.calibration_crops, "photos": photos,
                                 "calibration_table": table.sha256})


def _models_json(entries: dict[str, dict], table: CalibrationTable) -> dict:
    """models.json of the face models: the files, the packs made of them, their fingerprints."""
    import onnx

    # Detector and O-Net stay fp32 in the int8 pack. Measured (build 6, ORT 1.32, one thread):
    # the RFB detector in int8 (first and last convolutions and the box decoding in float) ran
    # 2.4 against 2.9 ms and scored the same on LFW, but its boxes moved by a pixel or two and
    # turned a held-out photo with tinted glasses from accept to uncertain; O-Net in int8 ran
    # slower (0.46 against 0.34 ms), and its rounding would move every alignment.
    # "-lite": the 512-d embedder, half the MACs per face, for devices that need the speed
    # more than SFace's accuracy (each pack has its own thresholds: edge/core/matcher.py).
    return {
        "format": MODELS_FORMAT,
        "alignment": ALIGNMENT,
        "built_with": {"onnx": onnx.__version__, "onnxruntime": _ort_version(), "build_version": BUILD_VERSION},
        "calibration": {"set": table.models["embedder"].calibration_set,
                        "crops": table.models["embedder"].calibration_crops,
                        "table": table.path.name, "table_sha256": table.sha256,
                        "measured": table.measured},
        "models": entries,
        "packs": face_packs(entries),
    }


def face_packs(entries: dict[str, dict]) -> dict[str, dict]:
    """The packs made of the face models in `entries` (the liveness step adds its file to each)."""
    packs: dict[str, dict] = {
        precision + suffix: {"files": {"detector": "detector.fp32.onnx", "landmarks": "landmarks.fp32.onnx",
                                       "embedder": f"{role}.{precision}.onnx"}}
        for suffix, role in EMBEDDERS.items()
        for precision in ("int8", "fp32")
    }
    # The same files embedding each crop and its mirror (edge.vision.packs.MIRROR_PACKS): a pack
    # of its own, so its fingerprints differ and its embeddings never meet the one-pass pack's.
    for mirror, plain in MIRROR_PACKS.items():
        packs[mirror] = {"files": dict(packs[plain]["files"]), "embedding": MIRROR_MEAN}
    for pack in packs.values():
        files, embedding = pack["files"], pack.get("embedding")
        pack["fingerprint"] = pack_fingerprint(files, entries, embedding)
        pack["embedder_fingerprint"] = embedder_fingerprint(entries[files["embedder"]]["sha256"],
                                                            entries[files["landmarks"]]["sha256"], ALIGNMENT,
                                                            embedding)
    return packs


def default_manifest(models_dir: Path) -> Path:
    own = models_dir / "manifest.toml"
    if own.is_file():
        return own
    return Path(__file__).resolve().parents[2] / "models" / "manifest.toml"


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
