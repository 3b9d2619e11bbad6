"""The calibration table (edge/modelpack/table.py): `models build` quantizes from committed ranges
and runs no calibration inference, so the int8 bytes are the same on every CPU."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.modelpack import quantize as qz
from edge.modelpack import table as tb
from edge.modelpack.errors import ModelBuildError
from edge.modelpack.manifest import load_manifest

EXE = Path(sys.executable).with_name("edge-verifier")
REPO = Path(__file__).resolve().parents[2]
REPO_MANIFEST = REPO / "models" / "manifest.toml"
REPO_TABLE = REPO / "models" / tb.TABLE_NAME


def _conv_conv() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (4, 3, 3, 3)).astype(np.float32), "w0"),
             numpy_helper.from_array(rng.normal(0, 0.3, (4, 4, 1, 1)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(0, 0.1, 4).astype(np.float32), "b1")]
    nodes = [helper.make_node("Conv", ["x", "w0"], ["c0"], name="conv0", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["c0", "w1", "b1"], ["y"], name="conv1")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _calibrated_tensors(model: onnx.ModelProto, tmp_path: Path) -> list[str]:
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer

    return sorted(qz.calibrated_tensors(load_model_with_shape_infer(qz.pre_process(model, tmp_path))))


def _ranges(names: list[str]) -> dict[str, tuple[float, float]]:
    """Exact float32 ranges, different for every tensor (none a calibrator would find)."""
    return {n: (float(np.float32(-0.75 - i / 8)), float(np.float32(1.5 + i / 3))) for i, n in enumerate(names)}


def test_quantizing_from_ranges_runs_no_inference_and_codes_each_tensor_by_its_range(tmp_path, monkeypatch):
    import onnxruntime as ort
    from onnxruntime.quantization import calibrate

    model = _conv_conv()
    ranges = _ranges(_calibrated_tensors(model, tmp_path))
    assert set(ranges) == {"x", "c0", "y"}

    def no_inference(*args, **kwargs):
        raise AssertionError("quantizing from a table ran a network")

    monkeypatch.setattr(ort.InferenceSession, "run", no_inference)
    monkeypatch.setattr(calibrate, "create_calibrator", no_inference)
    monkeypatch.setattr(calibrate.HistogramCalibrater, "collect_data", no_inference)
    first = qz.quantize_from_ranges(model, ranges, [])
    assert qz.quantize_from_ranges(model, ranges, []) == first  # a function of its inputs
    monkeypatch.undo()

    quantized = onnx.load_from_string(first)
    init = {i.name: numpy_helper.to_array(i) for i in quantized.graph.initializer}
    coded = {}
    for node in quantized.graph.node:
        if node.op_type == "QuantizeLinear":
            # a graph output is quantized under another name, the output keeping its own
            coded[node.input[0].removesuffix("_QuantizeLinear_Input")] = (int(init[node.input[2]]),
                                                                           float(init[node.input[1]]))
    assert set(coded) == set(ranges)  # every activation coded, by the range the table gives it
    for name, (low, high) in ranges.items():
        assert coded[name] == tb.uint8_params(low, high), name
    assert {n.op_type for n in quantized.graph.node} >= {"QuantizeLinear", "DequantizeLinear", "Conv"}
    # Other ranges, other codes: the table is what decides them.
    wider = {n: (lo * 2, hi * 2) for n, (lo, hi) in ranges.items()}
    assert qz.quantize_from_ranges(model, wider, []) != first


def test_ranges_must_name_exactly_the_tensors_ort_calibrates(tmp_path):
    model = _conv_conv()
    ranges = _ranges(_calibrated_tensors(model, tmp_path))
    del ranges["c0"]  # left out, it would silently stay float
    with pytest.raises(ValueError, match="1 missing.*c0"):
        qz.quantize_from_ranges(model, ranges, [])
    with pytest.raises(ValueError, match="1 unknown.*renamed"):
        qz.quantize_from_ranges(model, {**_ranges(_calibrated_tensors(model, tmp_path)), "renamed": (0.0, 1.0)}, [])


def _table(photos: str = "f" * 16, **tensors) -> str:
    ranges = tensors or {"a": (-1.0, 2.5)}
    return tb.dumps(photos, {"cpu": "test"}, {role: tb.ModelRanges("0" * 64, "set", 3, ranges) for role in tb.ROLES})


def test_the_table_holds_exact_float32_values_and_reads_back_the_same(tmp_path):
    rng = np.random.default_rng(5)
    values = [float(v) for v in rng.normal(0, 50, 40).astype(np.float32)] + [
        float(np.finfo(np.float32).tiny), float(np.float32(1e-30)), float(np.float32(3e38)), 0.0]
    ranges = {f"t{i}": (min(a, b), max(a, b)) for i, (a, b) in enumerate(zip(values[::2], values[1::2]))}
    path = tmp_path / "calibration.json"
    path.write_text(_table(**ranges))
    table = tb.load_table(path)
    for role in tb.ROLES:
        assert table.models[role].tensors == ranges
    assert all(float(np.float32(v)) == v for pair in ranges.values() for v in pair)
    assert table.sha256 == tb.table_sha256(path)
    # Human-readable: one tensor per line.
    assert any(line.strip().startswith('"t0": [') for line in path.read_text().splitlines())
    with pytest.raises(ValueError):
        _table(a=(0.1, 1.0))  # 0.1 is no float32: the writer refuses to round it silently


@pytest.mark.parametrize("damage, message", [
    (lambda t: None, "not found"),
    (lambda t: "{not json", "is not JSON"),
    (lambda t: {**t, "format": 99}, "not a table of format"),
    (lambda t: {**t, "recipe": {**t["recipe"], "calibrator": "min/max"}}, "another recipe"),
    (lambda t: {**t, "models": {k: v for k, v in t["models"].items() if k != "liveness"}}, "no ranges for liveness"),
    (lambda t: _set(t, [0.1, 2.0]), "not \\[min, max\\] of two finite float32"),
    (lambda t: _set(t, [2.0, -1.0]), "min 2.0 > max -1.0"),
    (lambda t: _set(t, ["-1", 2.0]), "not \\[min, max\\]"),
    (lambda t: _set(t, [-1.0]), "not \\[min, max\\]"),
])
def test_a_missing_or_malformed_table_is_a_clear_model_build_error(tmp_path, damage, message):
    path = tmp_path / "calibration.json"
    broken = damage(json.loads(_table()))
    if broken is not None:
        path.write_text(broken if isinstance(broken, str) else json.dumps(broken))
    with pytest.raises(ModelBuildError, match=message) as err:
        tb.load_table(path)
    assert str(path) in str(err.value) and "models calibrate" in str(err.value)


def _set(table: dict, pair: list) -> dict:
    table["models"]["embedder"]["tensors"]["a"] = pair
    return table


def test_nan_and_infinity_are_refused(tmp_path):
    path = tmp_path / "calibration.json"
    for bad in ("NaN", "Infinity"):
        path.write_text(_table().replace("[-1.0, 2.5]", f"[-1.0, {bad}]", 1))
        with pytest.raises(ModelBuildError, match="finite float32"):
            tb.load_table(path)
    assert not math.isnan(tb.load_table(REPO_TABLE).models["embedder"].tensors["_minusscalar0"][0])


def test_the_table_must_be_measured_on_the_manifest_photos_and_graphs(tmp_path):
    from edge.modelpack.calibration import photos_fingerprint

    photos = photos_fingerprint(load_manifest(REPO_MANIFEST))
    committed = tb.load_table(REPO_TABLE, photos)  # the committed table matches the committed manifest
    assert committed.photos == photos and set(committed.models) == set(tb.ROLES)
    other = tmp_path / "calibration.json"
    other.write_text(REPO_TABLE.read_text().replace(f'"photos": "{photos}"', '"photos": "0123456789abcdef"'))
    with pytest.raises(ModelBuildError, match="other calibration photos"):
        tb.load_table(other, photos)
    # `models build` refuses it before doing any work.
    proc = subprocess.run([str(EXE), "models", "build", "--models-dir", str(tmp_path / "models"),
                           "--calibration", str(other)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "other calibration photos" in proc.stderr
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    # Ranges measured on another float graph (another conversion) are refused too.
    with pytest.raises(ModelBuildError, match="measured on another graph.*models calibrate"):
        committed.ranges("embedder", "1" * 64)


def test_the_int8_files_record_their_table_and_a_changed_table_makes_both_steps_stale(models_dir, tmp_path):
    from edge.modelpack.build import FACE_MODELS, LIVENESS_MODELS, _read_meta, _step_is_current, is_up_to_date

    sources = load_manifest(REPO_MANIFEST)
    meta = json.loads((models_dir / "models.json").read_text())
    sha = tb.table_sha256(REPO_TABLE)
    int8 = [info for info in meta["models"].values() if info["precision"] == "int8"]
    assert len(int8) == 3 and all(info["quantization"]["calibration_table"] == sha for info in int8)
    assert meta["calibration"]["table_sha256"] == sha
    for name in meta["models"]:
        (tmp_path / name).symlink_to(models_dir / name)
    (tmp_path / "models.json").write_text(json.dumps(meta))
    assert is_up_to_date(tmp_path, sources, REPO_TABLE)
    # One range moved by one float32 step: another table, so both int8 steps rebuild.
    text = REPO_TABLE.read_text()
    line = next(ln for ln in text.splitlines() if re.match(r'\s+"[^"]+": \[-?\d', ln))
    low = float(line.split("[")[1].split(",")[0])
    moved = line.replace(repr(low), repr(float(np.nextafter(np.float32(low), np.float32(-np.inf)))), 1)
    changed = tmp_path / "changed.json"
    changed.write_text(text.replace(line, moved, 1))
    assert tb.load_table(changed).sha256 != sha
    on_disk = _read_meta(tmp_path)
    assert not _step_is_current(tmp_path, on_disk, sources, FACE_MODELS, changed)
    assert not _step_is_current(tmp_path, on_disk, sources, LIVENESS_MODELS, changed)
    assert not is_up_to_date(tmp_path, sources, tmp_path / "missing.json")


def test_drift_counts_the_tensors_whose_uint8_coding_would_change():
    committed_ranges = {"a": (-1.0, 2.5), "b": (0.0, 6.0), "c": (-3.0, 3.0)}
    fresh_ranges = {**committed_ranges, "b": (0.0, float(np.float32(6.0001)))}

    def tables(ranges):
        return {role: tb.ModelRanges("0" * 64, "set", 3, ranges) for role in tb.ROLES}

    committed = tb.CalibrationTable(Path("t.json"), "0" * 64, "p", {}, tables(committed_ranges))
    same = tb.drift(committed, tables(committed_ranges))["embedder"]
    assert same["identical_ranges"] == 3 and same["tensors_whose_uint8_params_differ"] == 0
    assert same["max_relative_change"] == 0
    moved = tb.drift(committed, tables(fresh_ranges))["liveness"]
    assert moved["identical_ranges"] == 2 and moved["tensors_whose_uint8_params_differ"] == 1
    assert 0 < moved["max_relative_change"] < 1e-4 and moved["scale_differs"] == 1


def test_the_liveness_step_does_not_import_the_face_step():
    # build.py runs liveness.py's step; liveness.py must not import build.py back (the old circle).
    code = "import sys, edge.modelpack.liveness; print('edge.modelpack.build' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"
