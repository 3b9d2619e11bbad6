"""`edge-verifier models build`: verification of what comes from the registries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edge.modelpack.convert import upgrade
from edge.modelpack.manifest import load_manifest
from tests.modelpack.onnx_graphs import optimized_ops, run_graph

EXE = Path(sys.executable).with_name("edge-verifier")
REPO_MANIFEST = Path(__file__).resolve().parents[2] / "models" / "manifest.toml"


def _build(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(EXE), "models", "build", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_tampered_archive_in_the_cache_is_rejected_and_nothing_is_written(tmp_path, models_dir):
    source = load_manifest(REPO_MANIFEST)[0]
    cache, out = tmp_path / "cache", tmp_path / "models"
    cache.mkdir()
    real = models_dir / "cache" / source.archive
    if real.is_file():
        data = bytearray(real.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one flipped byte deep inside the archive
    else:
        data = bytearray(b"not the archive the manifest pins")
    (cache / source.archive).write_bytes(bytes(data))
    proc = _build("--models-dir", str(out), "--cache", str(cache))
    assert proc.returncode != 0
    assert "sha256 mismatch" in proc.stderr and source.archive in proc.stderr
    assert source.archive_sha256 in proc.stderr  # names the expected hash
    assert not out.exists() or not any(out.glob("*.onnx")) and not (out / "models.json").exists()


def test_missing_npm_client_is_a_clear_error(tmp_path):
    manifest = tmp_path / "manifest.toml"
    text = REPO_MANIFEST.read_text()
    manifest.write_text(text[text.index("[[source]]\nname = \"faceplugin\""):])
    env = {**os.environ, "PATH": str(tmp_path)}  # no npm on this PATH
    proc = _build("--models-dir", str(tmp_path / "models"), "--manifest", str(manifest),
                  "--cache", str(tmp_path / "cache"), env=env)
    assert proc.returncode != 0
    assert "npm not found" in proc.stderr


def _conv_bn_with_weights_as_inputs() -> onnx.ModelProto:
    """Conv + BatchNorm, opset 11, every weight also a graph input (as SFace's exporter wrote it)."""
    rng = np.random.default_rng(0)
    weights = {"w": rng.normal(size=(4, 3, 3, 3)), "scale": rng.uniform(0.5, 2, 4), "bias": rng.normal(size=4),
               "mean": rng.normal(size=4), "var": rng.uniform(0.5, 2, 4)}
    inits = [numpy_helper.from_array(v.astype(np.float32), k) for k, v in weights.items()]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"]),
             helper.make_node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], ["y"])]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])]
    inputs += [helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(i.dims)) for i in inits]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])


def test_weights_listed_as_graph_inputs_are_dropped_so_batchnorm_folds(tmp_path, models_dir):
    source = _conv_bn_with_weights_as_inputs()
    # As exported, the weights can be overridden at run time, so ONNX Runtime keeps the BatchNorm.
    assert "BatchNormalization" in optimized_ops(source, tmp_path, "basic")
    converted = upgrade(source.SerializeToString(), "test")
    assert [i.name for i in converted.graph.input] == ["x"]
    assert optimized_ops(converted, tmp_path, "basic") == ["Conv"]
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run_graph(converted, x), run_graph(source, x), rtol=1e-5, atol=1e-5)
    # The built SFace takes the image and nothing else.
    assert [i.name for i in onnx.load(models_dir / "embedder.fp32.onnx").graph.input] == ["data"]


def test_manifest_pins_version_and_both_hashes_for_every_source():
    sources = load_manifest(REPO_MANIFEST)
    roles = {f.role for s in sources for f in s.files}
    assert {"detector", "landmarks", "embedder", "embedder-lite", "calibration"} <= roles
    # int8 calibration photos come from the registries too, so a clone without ../shared builds the same pack
    assert sum(f.role == "calibration" for s in sources for f in s.files) >= 10
    for s in sources:
        assert s.registry in ("pypi", "npm") and s.version and len(s.archive_sha256) == 64
        assert all(len(f.sha256) == 64 for f in s.files)


def test_second_build_verifies_and_changes_nothing(models_dir):
    from edge.vision.packs import PACKS

    before = {p.name: p.stat().st_mtime_ns for p in [*models_dir.glob("*.onnx"), models_dir / "models.json"]}
    index = json.loads((models_dir / "models.json").read_text())
    proc = _build("--models-dir", str(models_dir))
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in [*models_dir.glob("*.onnx"), models_dir / "models.json"]} == before
    assert set(PACKS) == set(index["packs"])
    for info in index["models"].values():
        assert {"sha256", "fingerprint", "input", "source", "precision", "role"} <= set(info)
        # Only the liveness model reads BGR (as it was trained; see edge/vision/liveness.py).
        assert info["input"]["colour"] == ("BGR" if info["role"] == "liveness" else "RGB")
        assert "normalisation" in info["input"]
    assert "calibration" in index and index["calibration"]["set"]


def test_a_models_folder_in_an_older_format_is_not_up_to_date(models_dir, tmp_path):
    from edge.modelpack.build import is_up_to_date

    sources = load_manifest(REPO_MANIFEST)
    meta = json.loads((models_dir / "models.json").read_text())
    for name in meta["models"]:
        (tmp_path / name).symlink_to(models_dir / name)
    (tmp_path / "models.json").write_text(json.dumps(meta))
    assert is_up_to_date(tmp_path, sources)
    # Another format is rebuilt even when every file matches, so `models build` never keeps a
    # folder that Pipeline.load refuses.
    (tmp_path / "models.json").write_text(json.dumps({**meta, "format": 1}))
    assert not is_up_to_date(tmp_path, sources)


def test_a_model_built_from_another_source_file_is_not_up_to_date(models_dir, tmp_path):
    from edge.modelpack.build import is_up_to_date

    meta = json.loads((models_dir / "models.json").read_text())
    for name in meta["models"]:
        (tmp_path / name).symlink_to(models_dir / name)
    meta["models"]["liveness.fp32.onnx"]["source"]["sha256"] = "0" * 64
    (tmp_path / "models.json").write_text(json.dumps(meta))
    assert not is_up_to_date(tmp_path, load_manifest(REPO_MANIFEST))


def test_every_int8_model_is_calibrated_on_the_manifest_photos_and_rebuilt_when_they_change(models_dir, tmp_path):
    """The int8 embedders and the int8 liveness model record which registry photos they were
    calibrated on (never ../shared's, so a clone without it builds the same bytes); another
    photo in the manifest makes both steps stale."""
    from dataclasses import replace

    from edge.modelpack.build import FACE_MODELS, LIVENESS_MODELS, _read_meta, _step_is_current, is_up_to_date
    from edge.modelpack.calibration import photos_fingerprint

    sources = load_manifest(REPO_MANIFEST)
    meta = json.loads((models_dir / "models.json").read_text())
    int8 = {n: info for n, info in meta["models"].items() if info["precision"] == "int8"}
    assert sorted(int8) == ["embedder-lite.int8.onnx", "embedder.int8.onnx", "liveness.int8.onnx"]
    for info in int8.values():
        q = info["quantization"]
        assert q["photos"] == photos_fingerprint(sources)
        assert "@vladmandic/face-api" in q["calibration_set"] and "face_recognition" in q["calibration_set"]
        # the embedders: every face of the group photos; liveness: the best face of each frame
        assert q["calibration_crops"] >= (60 if info["role"] == "liveness" else 150)
    for name in meta["models"]:
        (tmp_path / name).symlink_to(models_dir / name)
    (tmp_path / "models.json").write_text(json.dumps(meta))
    assert is_up_to_date(tmp_path, sources)
    i, src = next((i, s) for i, s in enumerate(sources) if any(f.role == "calibration" for f in s.files))
    other = [*sources[:i], replace(src, files=src.files[1:]), *sources[i + 1:]]  # one photo fewer
    assert photos_fingerprint(other) != photos_fingerprint(sources)
    on_disk = _read_meta(tmp_path)
    assert not _step_is_current(tmp_path, on_disk, other, FACE_MODELS)
    assert not _step_is_current(tmp_path, on_disk, other, LIVENESS_MODELS)


def test_adding_the_liveness_model_builds_only_it(models_dir, tmp_path):
    """A folder built before liveness existed gets the two liveness files and nothing else
    rewritten: its face models stay the symlinks they were (no re-quantization of the embedders)."""
    meta = json.loads((models_dir / "models.json").read_text())
    liveness = [n for n, info in meta["models"].items() if info["role"] == "liveness"]
    assert sorted(liveness) == ["liveness.fp32.onnx", "liveness.int8.onnx"]
    for name in liveness:
        del meta["models"][name]
    for pack in meta["packs"].values():
        del pack["files"]["liveness"]
    faces = list(meta["models"])
    for name in faces:
        (tmp_path / name).symlink_to(models_dir / name)
    (tmp_path / "models.json").write_text(json.dumps(meta))
    proc = _build("--models-dir", str(tmp_path), "--cache", str(models_dir / "cache"))
    assert proc.returncode == 0, proc.stderr
    assert "face models are up to date" in proc.stderr
    assert all((tmp_path / name).is_symlink() for name in faces)
    built = json.loads((tmp_path / "models.json").read_text())
    assert built["packs"]["int8"]["files"]["liveness"] == "liveness.int8.onnx"
    assert built["packs"]["fp32"]["files"]["liveness"] == "liveness.fp32.onnx"
    # The same bytes as the full build's (the build is deterministic) and a second run is a no-op.
    full = json.loads((models_dir / "models.json").read_text())["models"]
    for name in liveness:
        assert built["models"][name]["sha256"] == full[name]["sha256"]
    again = _build("--models-dir", str(tmp_path), "--cache", str(models_dir / "cache"))
    assert again.returncode == 0 and "up to date" in again.stderr


def test_models_build_check_says_the_built_folder_is_the_documented_build(models_dir):
    # `make test` builds models/ from the manifest on this machine: the same bytes the shipped
    # thresholds were measured on, or the build is not reproducible.
    from edge.modelpack.build import BUILD_VERSION, LIVENESS_BUILD_VERSION
    from edge.modelpack.check import DOCUMENTED_BUILD, DOCUMENTED_LIVENESS_STEP

    # A bumped step version changes the bytes: the documented fingerprints must follow it.
    assert (DOCUMENTED_BUILD, DOCUMENTED_LIVENESS_STEP) == (BUILD_VERSION, LIVENESS_BUILD_VERSION)
    proc = _build("--check", "--models-dir", str(models_dir))
    assert proc.returncode == 0, proc.stderr
    assert "is the documented build" in proc.stdout


def test_models_build_check_names_a_changed_file_and_an_undocumented_pack(models_dir, tmp_path):
    from edge.modelpack.fetch import sha256_file
    from edge.modelpack.share import pack_fingerprint

    meta = json.loads((models_dir / "models.json").read_text())
    for name in meta["models"]:
        (tmp_path / name).symlink_to(models_dir / name)
    # An int8 embedder quantized differently (another onnxruntime, other crops), described honestly.
    other = tmp_path / "embedder.int8.onnx"
    other.unlink()
    other.write_bytes((models_dir / "embedder.int8.onnx").read_bytes() + b"\0")
    meta["models"]["embedder.int8.onnx"]["sha256"] = sha256_file(other)
    meta["packs"]["int8"]["fingerprint"] = pack_fingerprint(
        meta["packs"]["int8"]["files"], {n: i["sha256"] for n, i in meta["models"].items()})
    (tmp_path / "models.json").write_text(json.dumps(meta))
    proc = _build("--check", "--models-dir", str(tmp_path))
    assert proc.returncode == 1 and "is not the documented build" in proc.stdout
    assert "run `edge-verifier models build`" in proc.stdout
    assert "pack int8: fingerprint" in proc.stderr and "sha256 differs" not in proc.stderr
    assert "pack fp32" not in proc.stderr
    # A file changed after the build (its models.json entry untouched) is named.
    (tmp_path / "detector.fp32.onnx").unlink()
    (tmp_path / "detector.fp32.onnx").write_bytes((models_dir / "detector.fp32.onnx").read_bytes()[:-1] + b"\0")
    proc = _build("--check", "--models-dir", str(tmp_path))
    assert proc.returncode == 1 and "detector.fp32.onnx: sha256 differs" in proc.stderr


def test_a_folder_built_before_the_mirror_pack_gets_it_without_rebuilding_a_file(models_dir, tmp_path):
    meta = json.loads((models_dir / "models.json").read_text())
    for name in meta["models"]:
        (tmp_path / name).symlink_to(models_dir / name)
    older = {**meta, "packs": {k: v for k, v in meta["packs"].items() if k != "int8-mirror"}}
    (tmp_path / "models.json").write_text(json.dumps(older))
    proc = _build("--models-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stderr and "packs of" in proc.stderr
    assert all((tmp_path / name).is_symlink() for name in meta["models"])  # no file rebuilt
    index = json.loads((tmp_path / "models.json").read_text())
    assert index["packs"] == meta["packs"]
    mirror, plain = index["packs"]["int8-mirror"], index["packs"]["int8"]
    # The same files, embedding another way: both fingerprints its own.
    assert mirror["files"] == plain["files"] and mirror["embedding"] == "mirror-mean" and "embedding" not in plain
    assert mirror["fingerprint"] != plain["fingerprint"]
    assert mirror["embedder_fingerprint"] != plain["embedder_fingerprint"]
