"""The real pipeline on real photos: detection, landmarks, quality, embeddings, decisions."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.matcher import DEFAULT_THRESHOLDS, cosine
from edge.vision import Pipeline, load_image
from edge.vision.packs import ModelPackError
from edge.vision.quality import assess

# A fixed handful of LFW View-2 pairs (fold 1 and others): clear same-person and
# different-person cases that must stay on the right side of the shipped thresholds.
SAME = [
    ("Aaron_Peirsol", 1, "Aaron_Peirsol", 3),
    ("Aaron_Peirsol", 3, "Aaron_Peirsol", 4),
    ("Abel_Pacheco", 1, "Abel_Pacheco", 4),
    ("Akhmed_Zakayev", 2, "Akhmed_Zakayev", 3),
]
DIFFERENT = [
    ("Abdel_Madi_Shabneh", 1, "Dean_Barker", 1),
    ("Abdel_Madi_Shabneh", 1, "Giancarlo_Fisichella", 1),
    ("Abdel_Madi_Shabneh", 1, "Mikhail_Gorbachev", 1),
    ("Aaron_Peirsol", 1, "Aaron_Eckhart", 1),
]


def _lfw(faces_dir: Path, person: str, n: int) -> np.ndarray:
    return load_image(faces_dir / "lfw" / person / f"{person}_{n:04d}.jpg")


def _embedding(pipe: Pipeline, img: np.ndarray) -> np.ndarray:
    faces = pipe.analyze(img, max_faces=1)
    assert faces, "no face found"
    return faces[0].embedding


@pytest.mark.parametrize("a, i, b, j", SAME)
def test_same_person_lfw_pairs_score_above_accept(pipeline, faces_dir, a, i, b, j):
    score = cosine(_embedding(pipeline, _lfw(faces_dir, a, i)), _embedding(pipeline, _lfw(faces_dir, b, j)))
    assert score >= DEFAULT_THRESHOLDS.accept


@pytest.mark.parametrize("a, i, b, j", DIFFERENT)
def test_different_person_lfw_pairs_score_below_reject(pipeline, faces_dir, a, i, b, j):
    score = cosine(_embedding(pipeline, _lfw(faces_dir, a, i)), _embedding(pipeline, _lfw(faces_dir, b, j)))
    assert score < DEFAULT_THRESHOLDS.reject


def test_nonface_images_yield_no_face(pipeline, faces_dir):
    paths = sorted((faces_dir / "nonface").iterdir())
    assert len(paths) >= 10
    found = {p.name: len(pipeline.detect(load_image(p))) for p in paths}
    assert all(n == 0 for n in found.values()), {k: v for k, v in found.items() if v}


def test_detected_face_has_box_landmarks_quality_and_no_embedding(pipeline, faces_dir):
    img = _lfw(faces_dir, "Aaron_Peirsol", 1)
    (face,) = pipeline.detect(img)
    x, y, w, h = face.box
    assert 40 < x < 125 and 40 < y < 125 and 60 < w < 160 and 60 < h < 170
    assert face.landmarks.shape == (5, 2) and face.landmarks.dtype == np.float32
    le, re, nose, lm, rm = face.landmarks
    assert le[0] < re[0] and lm[0] < rm[0] and le[1] < nose[1] < lm[1]
    assert face.quality.ok and face.quality.reason is None
    assert face.embedding is None
    assert len(face.pose) == 3


def test_embedding_is_a_unit_float32_vector_stored_on_the_face(pipeline, faces_dir):
    img = _lfw(faces_dir, "Aaron_Peirsol", 1)
    face = pipeline.detect(img)[0]
    vec = pipeline.embed(img, face)
    assert vec.dtype == np.float32 and vec.ndim == 1
    assert abs(float(np.linalg.norm(vec)) - 1) < 1e-4
    assert face.embedding is vec


def test_many_faces_are_all_found_largest_first(pipeline, faces_dir):
    people = ["Aaron_Peirsol", "Aaron_Eckhart", "Abel_Pacheco", "Akhmed_Zakayev", "Dean_Barker", "Mikhail_Gorbachev"]
    tiles = [_lfw(faces_dir, p, 1) for p in people]
    tiles[0] = cv2.resize(tiles[0], (250, 250))
    grid = np.vstack([np.hstack(tiles[:3]), np.hstack(tiles[3:])])
    # make the first face clearly the largest: paste it scaled up on a wider canvas
    canvas = np.zeros((500, 1250, 3), np.uint8)
    canvas[:, :750] = grid
    canvas[:, 750:] = cv2.resize(tiles[0], (500, 500))
    faces = pipeline.analyze(canvas)
    assert len(faces) == 7
    areas = [f.box[2] * f.box[3] for f in faces]
    assert areas == sorted(areas, reverse=True)
    assert faces[0].box[0] >= 750
    assert all(f.embedding is not None for f in faces)
    assert len(pipeline.analyze(canvas, max_faces=2)) == 2


def test_grayscale_photo_still_matches_its_colour_original(pipeline, faces_dir):
    img = _lfw(faces_dir, "Aaron_Peirsol", 1)
    grey = cv2.cvtColor(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert cosine(_embedding(pipeline, img), _embedding(pipeline, grey)) >= DEFAULT_THRESHOLDS.accept


def test_close_up_face_gets_the_same_landmarks_scaled(pipeline, faces_dir):
    # A face filling a door camera's view: its O-Net crops (about 400 px) are halved before the
    # 48 px resize (landmarks._shrink); the landmarks and the identity must not notice.
    img = _lfw(faces_dir, "Abel_Pacheco", 1)
    close = cv2.resize(img, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    face, big = pipeline.analyze(img, max_faces=1)[0], pipeline.analyze(close, max_faces=1)[0]
    assert big.box[2] >= 4 * 48 and big.quality.ok  # crops this large take the halving path
    assert np.abs(big.landmarks / 3 - face.landmarks).max() < 1.5  # pixels of the original photo
    assert cosine(face.embedding, big.embedding) >= DEFAULT_THRESHOLDS.accept


def test_tiny_face_is_flagged_too_small(pipeline, faces_dir):
    img = _lfw(faces_dir, "Aaron_Peirsol", 1)
    small = np.zeros((480, 640, 3), np.uint8)
    small[200:290, 300:390] = cv2.resize(img, (90, 90), interpolation=cv2.INTER_AREA)
    faces = pipeline.detect(small)
    assert faces and faces[0].quality.reason == "too_small" and not faces[0].quality.ok


def test_blurred_face_is_flagged_blurred(pipeline, faces_dir):
    img = load_image(faces_dir / "five_celebrity" / "Madonna" / "train_1.jpg")
    blurred = cv2.GaussianBlur(img, (0, 0), 3)
    faces = pipeline.detect(blurred)
    assert faces and faces[0].quality.reason == "blurred"
    assert pipeline.detect(img)[0].quality.ok


def test_turned_face_is_flagged_off_frontal(pipeline, faces_dir):
    img = _lfw(faces_dir, "Aaron_Peirsol", 1)
    face = pipeline.detect(img)[0]
    # move the nose tip far right of the eye/mouth midline, as on a head turned ~50 degrees
    lm = face.landmarks.copy()
    lm[2, 0] = (lm[0, 0] + lm[1, 0]) / 2 + 0.7 * (lm[1, 0] - lm[0, 0])
    q = assess(face.box, lm, face.aligned)
    assert q.reason == "off_frontal" and q.yaw > 40
    assert face.quality.ok and abs(face.quality.yaw) < 20


def test_int8_and_fp32_embeddings_agree(pipeline, pipeline_fp32, faces_dir):
    img = _lfw(faces_dir, "Abel_Pacheco", 1)
    assert pipeline.fingerprint != pipeline_fp32.fingerprint
    assert cosine(_embedding(pipeline, img), _embedding(pipeline_fp32, img)) > 0.9


def test_concurrent_analyze_gives_the_same_embeddings(pipeline, faces_dir):
    imgs = [_lfw(faces_dir, p, n) for p, n, _, _ in SAME]
    expected = [_embedding(pipeline, im) for im in imgs]
    results: dict[int, list[np.ndarray]] = {}

    def work(k: int) -> None:
        results[k] = [_embedding(pipeline, im) for im in imgs]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got in results.values():
        for a, b in zip(got, expected):
            assert np.allclose(a, b, atol=1e-5)


def test_loading_from_a_folder_without_models_says_how_to_build_them(tmp_path):
    with pytest.raises(ModelPackError, match="edge-verifier models build"):
        Pipeline.load(tmp_path)


def test_models_from_an_older_build_are_refused_with_how_to_rebuild(models_dir, tmp_path):
    # A folder left from build 7 (format 1: two embedders, no "std") is refused with the fix
    # instead of failing on a missing key or normalising SFace's input wrongly.
    meta = json.loads((models_dir / "models.json").read_text())
    assert meta["format"] == 2
    (tmp_path / "models.json").write_text(json.dumps({**meta, "format": 1}))
    with pytest.raises(ModelPackError, match="in format 1, this code reads 2: run `edge-verifier models build`"):
        Pipeline.load(tmp_path)


def test_detector_orders_equal_scores_by_anchor_on_every_cpu(pipeline):
    # 300 non-overlapping boxes (NMS keeps them all) with two score values, the top ones not at
    # index 0: numpy's default sort (SIMD quicksort on x86, another on aarch64) orders ties
    # differently per CPU; the detector must order them by anchor, then cut at top_k.
    det = pipeline.detector
    n = 300
    grid = np.arange(n, dtype=np.float32)
    x1, y1 = (grid % 20) * 16, (grid // 20) * 16
    boxes = np.column_stack([x1, y1, x1 + 10, y1 + 10]) / np.array([320, 240, 320, 240], dtype=np.float32)
    scores = np.full(n, 0.9, dtype=np.float32)
    scores[5::7] = 0.95
    out = det._postprocess(scores, boxes.astype(np.float32), 1.0, (10_000, 10_000, 3))
    expected = sorted(range(n), key=lambda i: (-scores[i], i))[: det.top_k]
    assert len(out) == det.top_k
    np.testing.assert_allclose(out[:, 0], x1[expected], atol=1e-3)
    np.testing.assert_allclose(out[:, 1], y1[expected], atol=1e-3)
