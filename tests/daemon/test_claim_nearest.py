"""A waiting verify claim (a badge) goes to the face nearest the camera only. It went to the
first face ready to be decided: a member identified a moment before, still in view further
back, answered the claim of a stranger who had just badged with the member's card (the
stranger's own face, new at the camera, was not ready yet). The real frame path (pipeline,
tracker, scorer, settle window) on composite frames of real photos."""

from __future__ import annotations

import time
from typing import Callable

import cv2
import numpy as np

from edge.core.matcher import Enrolled, Gallery, thresholds_for
from edge.daemon.claims import Claims
from edge.daemon.decide import Decider
from edge.daemon.liveness import LivenessPolicy
from edge.daemon.scoring import FrameScorer
from edge.daemon.settle import SettleWindow
from edge.daemon.tracker import Tracker
from edge.vision import Pipeline

MEMBER = ["Madonna/train_1.jpg", "Madonna/train_2.jpg", "Madonna/train_3.jpg"]
SEEN = "Madonna/val_1.jpg"  # the member as the camera sees her, not enrolled
STRANGER = "liveness/nuaa/live/0001/0001_00_00_01_0.jpg"


def _face_only(pipeline: Pipeline, bgr: np.ndarray, side: int) -> np.ndarray:
    """The face of `bgr`, with some context, scaled so that its box is about `side` px."""
    (face,) = pipeline.detect(bgr)[:1]
    x, y, w, h = face.box
    crop = bgr[max(0, y - h // 2): y + h + h // 2, max(0, x - w // 2): x + w + w // 2]
    return cv2.resize(crop, None, fx=side / w, fy=side / w)


def member_behind_a_stranger(pipeline: Pipeline, faces_dir) -> tuple[Gallery, Callable[[bool], np.ndarray]]:
    """The member enrolled (three photos), and frames of her further back (smaller), with or
    without a stranger nearer the camera."""
    celebrities = faces_dir / "five_celebrity"
    enrolled = []
    for i, name in enumerate(MEMBER):
        img = cv2.imread(str(celebrities / name))
        (face,) = pipeline.detect(img)[:1]
        enrolled.append(Enrolled("madonna", f"f{i}", pipeline.embed(img, face), ("staff",), "Madonna"))
    gallery = Gallery(enrolled, thresholds_for("int8", false_admit_rate=1e-3), version="t")

    member = _face_only(pipeline, cv2.imread(str(celebrities / SEEN)), 90)  # further back: smaller
    stranger = _face_only(pipeline, cv2.imread(str(faces_dir / STRANGER)), 170)  # at the reader
    scene = np.full((480, 640, 3), 200, np.uint8)

    def frame(with_stranger: bool) -> np.ndarray:
        out = scene.copy()
        out[40: 40 + member.shape[0], 600 - member.shape[1]: 600] = member
        if with_stranger:
            out[200: 200 + stranger.shape[0], 20: 20 + stranger.shape[1]] = stranger[: 280, : 400]
        return out

    return gallery, frame


def test_a_claim_goes_to_the_nearest_face_not_a_member_further_back(models_dir, faces_dir):
    pipeline = Pipeline.load(models_dir, precision="int8", threads=1)
    gallery, frame = member_behind_a_stranger(pipeline, faces_dir)

    decided = []
    claims = Claims(10.0)
    decider = Decider(None)
    window = SettleWindow(decider, 0.0, lambda c, out: decided.append((c.claim, out)))
    tracker = Tracker()
    scorer = FrameScorer(pipeline, tracker, decider, claims, window, lambda: gallery, max_faces=4, min_frames=3,
                         identify=True, groups=["staff"], liveness=LivenessPolicy("off", 5, None, None))

    def play(img: np.ndarray) -> None:
        scorer.process(img, time.perf_counter())
        window.settle_due((t.id for t in tracker.tracks), False)

    for _ in range(3):  # the member is identified
        play(frame(False))
    assert [(c, out.person_id, str(out.decision)) for c, out in decided] == [(None, "madonna", "accept")]
    claims.open("madonna")  # the stranger badges with her card as he steps up
    for _ in range(4):
        play(frame(True))
    answered = [(c.person_id, out.person_id, str(out.decision)) for c, out in decided if c is not None]
    assert answered and all(decision != "accept" for _, _, decision in answered), answered
