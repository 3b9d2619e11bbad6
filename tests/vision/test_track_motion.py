"""The motion cue (does the face move against a still background, or with it as one picture?):
on synthetic frames where the answer is known, and on real NUAA frames of one subject, live
and the same subject's printed photo held to the same webcam."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.bench.liveness_sources import nuaa_order
from edge.vision import track_motion

BOX = (260.0, 150.0, 120.0, 150.0)


def _texture(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Blurred noise: corners everywhere for the tracker, nothing periodic."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, shape).astype(np.float32)
    return cv2.GaussianBlur(noise, (0, 0), 2.0).clip(0, 255).astype(np.uint8)


def _scene(face_shift: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A still textured background with a differently textured face pasted in BOX, moved by
    `face_shift` (dx, dy) pixels."""
    frame = cv2.cvtColor(_texture((480, 640), 1), cv2.COLOR_GRAY2BGR)
    x, y, w, h = (int(v) for v in BOX)
    dx, dy = face_shift
    frame[y + dy:y + dy + h, x + dx:x + dx + w] = cv2.cvtColor(_texture((h, w), 2), cv2.COLOR_GRAY2BGR)
    return frame


def _moved_as_one(frame: np.ndarray, dx: float, dy: float, angle: float = 0.0) -> np.ndarray:
    """The whole picture moved (a print or a phone carried by a hand): shift and a little turn."""
    m = cv2.getRotationMatrix2D((BOX[0] + BOX[2] / 2, BOX[1] + BOX[3] / 2), angle, 1.0)
    m[:, 2] += (dx, dy)
    return cv2.warpAffine(frame, m, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REFLECT)


def test_a_face_moving_against_a_still_background_is_independent():
    m = track_motion.pair_motion(_scene(), _scene((10, 5)), BOX)
    assert m is not None
    assert m.face_shift > track_motion.MIN_SHIFT
    assert m.ring_static > 0.9 and m.ring_follow < 0.1
    assert m.independence > 0.8


@pytest.mark.parametrize("angle", [0.0, 3.0])
def test_a_picture_moving_as_one_is_not(angle):
    first = _scene()
    m = track_motion.pair_motion(first, _moved_as_one(first, 10, 5, angle), BOX)
    assert m is not None
    assert m.ring_follow > 0.9 and m.ring_static < 0.1
    assert m.independence < -0.8


def test_nobody_moved_is_no_verdict():
    """A still face says nothing either way: no verdict, not a live one."""
    first = _scene()
    assert track_motion.pair_motion(first, first.copy(), BOX) is None
    assert track_motion.track_independence([None, None]) is None


def test_hostile_inputs_give_no_verdict():
    first = _scene()
    assert track_motion.pair_motion(first, first[:200], BOX) is None  # frames of two sizes
    assert track_motion.pair_motion(first, first, (900.0, 900.0, 50.0, 50.0)) is None  # box off the frame
    assert track_motion.pair_motion(first, first, (10.0, 10.0, 2.0, 2.0)) is None  # a speck
    flat = np.zeros_like(first)
    assert track_motion.pair_motion(flat, flat, BOX) is None  # nothing to track


@pytest.fixture(scope="module")
def nuaa(faces_dir) -> Path:
    root = faces_dir / "liveness" / "nuaa"
    if not root.is_dir():
        pytest.skip(f"NUAA frames not found at {root} (set EDGE_VERIFIER_SHARED)")
    return root


def _subject_independence(pipeline, paths: list[Path]) -> tuple[float | None, int]:
    """The track cue over one subject's files, each with the next file of its session (NUAA
    keeps every 5th frame), with the earlier frame's face box; and how many pairs gave a verdict."""
    ordered = sorted(paths, key=nuaa_order)
    motions = []
    for a, b in zip(ordered, ordered[1:]):
        if nuaa_order(a)[0] != nuaa_order(b)[0]:
            continue  # the next session
        first, second = cv2.imread(str(a)), cv2.imread(str(b))
        faces = pipeline.detect(first)
        if faces:
            motions.append(track_motion.pair_motion(first, second, tuple(faces[0].box)))
    return track_motion.track_independence(motions), sum(m is not None for m in motions)


@pytest.mark.parametrize("subject", ["0001", "0006"])
def test_nuaa_live_moves_against_its_background_a_print_with_it(pipeline, nuaa, subject):
    """One subject at one webcam: the live face moves against the room, the printed photo's face
    with the paper (`bench liveness` measured the same direction on all nine subjects)."""
    live, live_n = _subject_independence(pipeline, list((nuaa / "live" / subject).glob("*.jpg")))
    attack, attack_n = _subject_independence(pipeline, list((nuaa / "print" / subject).glob("*.jpg")))
    assert live_n >= 5 and attack_n >= 5, (live_n, attack_n)
    assert live is not None and attack is not None
    assert live > 0.3 > 0.1 > attack, (live, attack)
