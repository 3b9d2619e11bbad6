"""Liveness (presentation-attack detection): the real model on real frames of ../shared/faces/liveness."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.vision.liveness import LivenessNet

EXE = Path(sys.executable).with_name("edge-verifier")
LIVE = ["0001/0001_00_00_01_0.jpg", "0004/0004_01_00_01_116.jpg", "0008/0008_00_00_02_135.jpg"]
PRINTS = ["0001/0001_00_00_01_0.jpg", "0004/0004_01_00_01_120.jpg", "0008/0008_00_00_01_122.jpg"]


@pytest.fixture(scope="module")
def data(faces_dir) -> Path:
    """../shared/faces/liveness, or skip; through faces_dir, so a test reading it is not `fast`."""
    liveness = faces_dir / "liveness"
    if not (liveness / "nuaa").is_dir():
        pytest.skip(f"liveness frames not found at {liveness} (set EDGE_VERIFIER_SHARED)")
    return liveness


def video_frames(path: Path, indices: list[int]) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames, i = [], 0
    while len(frames) < len(indices):
        ok, frame = cap.read()
        assert ok, f"{path} has no frame {indices[len(frames)]}"
        if i in indices:
            frames.append(frame)
        i += 1
    cap.release()
    return frames


def liveness_of(pipeline, frame):
    face = pipeline.detect(frame)[0]
    return pipeline.check_liveness(frame, face)


@pytest.mark.parametrize("name", LIVE)
def test_live_webcam_frames_pass(pipeline, data, name):
    result = liveness_of(pipeline, cv2.imread(str(data / "nuaa" / "live" / name)))
    assert result.verdict == "live" and result.reason is None
    assert result.score >= pipeline.liveness.threshold


@pytest.mark.parametrize("name", PRINTS)
def test_printed_photos_are_refused_as_attacks(pipeline, data, name):
    result = liveness_of(pipeline, cv2.imread(str(data / "nuaa" / "print" / name)))
    assert result.verdict == "attack" and result.reason is None
    assert result.score < pipeline.liveness.threshold


def test_phone_replay_frames_are_refused_and_the_live_video_passes(pipeline, data):
    replay = video_frames(data / "webcam" / "fake2.webm", [51, 201, 401])
    assert [liveness_of(pipeline, f).verdict for f in replay] == ["attack"] * 3
    live = video_frames(data / "webcam" / "real2.webm", [0, 200])
    assert [liveness_of(pipeline, f).verdict for f in live] == ["live"] * 2


def test_fp32_and_int8_models_agree_on_the_verdicts(pipeline, pipeline_fp32, data):
    frames = [cv2.imread(str(data / "nuaa" / kind / name)) for kind, names in (("live", LIVE), ("print", PRINTS))
              for name in names]
    assert pipeline.fingerprints["liveness"] != pipeline_fp32.fingerprints["liveness"]
    assert [liveness_of(pipeline, f).verdict for f in frames] == [liveness_of(pipeline_fp32, f).verdict for f in frames]


def test_a_tiny_face_gets_no_verdict_but_step_closer(pipeline, data):
    frame = cv2.imread(str(data / "nuaa" / "live" / LIVE[0]))
    small = cv2.resize(frame, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
    canvas = np.full_like(frame, 90)
    canvas[:small.shape[0], :small.shape[1]] = small  # same frame size, the face a quarter as wide
    face = pipeline.detect(canvas)[0]
    assert min(face.box[2:]) < LivenessNet.min_size
    result = pipeline.check_liveness(canvas, face)
    assert (result.score, result.verdict, result.reason) == (None, None, "step_closer")


def test_a_face_filling_the_frame_gets_no_verdict_but_step_back(pipeline, data):
    frame = cv2.imread(str(data / "nuaa" / "live" / LIVE[0]))
    x, y, w, h = pipeline.detect(frame)[0].box
    tight = frame[max(y - h // 8, 0): y + h + h // 8, max(x - w // 8, 0): x + w + w // 8]
    face = pipeline.detect(tight)[0]
    result = pipeline.check_liveness(tight, face)
    assert (result.score, result.verdict, result.reason) == (None, None, "step_back")


def test_gates_name_the_reason_from_the_box_alone():
    assert LivenessNet.gate((480, 640, 3), (300, 200, 40, 52)) == "step_closer"
    assert LivenessNet.gate((480, 640, 3), (200, 100, 150, 200)) is None  # crop capped at x2.4: scored
    assert LivenessNet.gate((480, 640, 3), (100, 20, 300, 400)) == "step_back"  # x1.2 at most


def test_the_crop_stays_inside_the_frame_and_is_bgr(data):
    frame = cv2.imread(str(data / "nuaa" / "live" / LIVE[0]))
    marked = frame.copy()
    marked[:, :, 0] = 255  # blue channel full: BGR order must reach the network unchanged
    crop = LivenessNet.crop(marked, (600, 440, 30, 30))  # a box in the corner: shifted inside
    assert crop.shape == (128, 128, 3) and (crop[:, :, 0] == 255).all()
    blob = LivenessNet.input_blob(marked, (600, 440, 30, 30))
    assert blob.shape == (1, 3, 128, 128) and (blob[0, 0] == 255).all()


def test_embed_json_reports_each_faces_liveness(models_dir, data):
    paths = [str(data / "nuaa" / "live" / LIVE[0]), str(data / "nuaa" / "print" / PRINTS[0])]
    proc = subprocess.run([str(EXE), "embed", *paths, "--json"], capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    verdicts = [line["faces"][0]["liveness"] for line in lines]
    assert [v["verdict"] for v in verdicts] == ["live", "attack"]
    assert all(v["reason"] is None and 0 <= v["score"] <= 1 for v in verdicts)


def test_bench_liveness_reports_apcer_per_attack_type_and_draws_the_det_plot(models_dir, data, tmp_path):
    plot = tmp_path / "det.png"
    proc = subprocess.run([str(EXE), "bench", "liveness", "--json", "--limit", "50", "--plot", str(plot),
                           "--timing-frames", "5"],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result["models"]) == {"fp32", "int8"}
    for entry in result["models"].values():
        assert set(entry["frames"]["apcer"]) == {"print", "replay"}
        assert 0 <= entry["frames"]["bpcer"] <= 1
        assert set(entry["at_bpcer"]) == {"1%", "5%", "10%"}
        assert entry["auc"]["print"] > 0.9  # prints are told apart from live frames
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "planarity" in result["cues"]
    # Timed as the daemon runs it: after the face pipeline, per model (values are not asserted).
    speed = result["speed"]
    assert 0 < speed["faces"] <= 5 and speed["threads"] == 1 and speed["pipeline_ms"] > 0
    assert set(speed["ms_per_face"]) == set(speed["x_pipeline"]) == {"fp32", "int8"}


def test_a_track_is_decided_on_the_median_of_its_frames_without_cues(pipeline):
    net = pipeline.liveness
    t = net.threshold
    # One frame far under the threshold among live ones does not refuse the track; a majority does.
    assert net.track([t * 50, t * 50, t / 100, t * 40, t * 30]) == (t * 40, "live")
    assert net.track([t / 10, t / 10, t * 50, t / 20, t * 2])[1] == "attack"


def _fusion(**kw):
    from edge.vision.liveness import FusedLiveness

    base = dict(names=["net"], mean=[0.0], scale=[1.0], weights=[1.0], bias=0.0, threshold=-2.0,
                track_threshold=-1.0)
    return FusedLiveness(**{**base, **kw})


def test_a_fused_track_is_decided_on_the_mean_of_its_frames_log_odds(pipeline):
    """With cues, the frames' fused scores are p(live) of the fused log-odds; the track averages
    the log-odds and compares them with the fusion's track threshold (not the frame one)."""
    from edge.vision.liveness import FusedLiveness

    net = pipeline.liveness.with_fusion(_fusion())
    p = [1 / (1 + np.exp(-z)) for z in (-0.5, -0.5, -3.0)]  # mean log-odds -1.33: under -1
    score, verdict = net.track(p)
    assert verdict == "attack" and FusedLiveness.logit(score) == pytest.approx(-4.0 / 3, abs=1e-4)
    p = [1 / (1 + np.exp(-z)) for z in (-0.5, -0.5, -1.5)]  # mean -0.83: over -1, live
    assert net.track(p)[1] == "live"
    # Each frame alone is judged against the frame threshold (-2): -1.5 is live on its own.
    assert net.decision_threshold == pytest.approx(1 / (1 + np.exp(2.0)))


def test_the_shipped_fusion_loads_and_a_malformed_one_is_refused(tmp_path):
    from edge.vision.liveness import FUSION_FILE, FusedLiveness

    fusion = FusedLiveness.load()
    assert fusion.names[0] == "net" and len(fusion.weights) == len(fusion.names)
    data = json.loads(FUSION_FILE.read_text())
    assert data["provenance"]["net"]["file"] == "liveness.int8.onnx"
    bad = tmp_path / "fusion.json"
    bad.write_text(json.dumps({**data, "names": [*data["names"][:-1], "context.no_such_cue"]}))
    with pytest.raises(ValueError):
        FusedLiveness.load(bad)
    bad.write_text(json.dumps({**data, "weights": data["weights"][:-1]}))
    with pytest.raises(ValueError):
        FusedLiveness.load(bad)


def test_with_cues_the_daemon_scores_a_frame_as_the_bench_measured_it(pipeline, data):
    """The shipped fusion on the real network and frames: the score the daemon's path gives
    (LivenessNet.infer with the fusion) is the fused value of the features `bench liveness`
    fitted and measured on (liveness_sources.frame_features), so what was measured is what runs;
    and prints and the replayed phone (frames it was fitted on: a wiring check, not a figure
    of generalisation) are refused."""
    from edge.bench import liveness_loso, liveness_sources
    from edge.vision.liveness import FusedLiveness

    fusion = FusedLiveness.load()
    fused = pipeline.liveness.with_fusion(fusion)
    frames = [cv2.imread(str(data / "nuaa" / kind / n)) for kind, names in (("live", LIVE), ("print", PRINTS))
              for n in names]
    replay = video_frames(data / "webcam" / "fake2.webm", [51, 201, 401])
    verdicts = []
    for frame in frames + replay:
        face = pipeline.detect(frame)[0]
        result = fused.infer(frame, face.box)
        rec = liveness_sources.frame_features(frame, face, {"int8": pipeline.liveness})
        X, ok = liveness_loso.matrix([rec], fusion.names)
        assert ok.all()
        assert FusedLiveness.logit(result.score) == pytest.approx(float(fusion.logits(X)[0]), abs=1e-3)
        verdicts.append(result.verdict)
    assert verdicts[len(LIVE):] == ["attack"] * (len(PRINTS) + len(replay))
