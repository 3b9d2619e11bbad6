"""The crop the edge sends the hub when a face is uncertain (edge.vision.crop_jpeg): the hub
verifies the largest face it finds in it, so the crop holds the tracked face only."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.core.matcher import cosine
from edge.vision import Pipeline, crop_jpeg

NUAA_LIVE = "liveness/nuaa/live/0001/0001_00_00_01_0.jpg"


@pytest.fixture(scope="module")
def pipeline(models_dir) -> Pipeline:
    return Pipeline.load(models_dir, precision="int8", threads=1)


def embedded(pipeline: Pipeline, bgr: np.ndarray) -> list:
    faces = pipeline.detect(bgr)
    for face in faces:
        if face.quality.ok:
            pipeline.embed(bgr, face)
    return faces


def test_the_hub_is_sent_the_tracked_face_not_a_photo_held_above_it(pipeline, faces_dir):
    """A stranger with a member's badge (a verify claim) holds the member's photo above their
    head: the crop around the stranger's face held the photo too, larger, and the hub verified
    the photo (the edge took its yes). The crop now keeps the stranger's face only."""
    stranger = cv2.copyMakeBorder(cv2.imread(str(faces_dir / NUAA_LIVE)), 240, 0, 0, 0, cv2.BORDER_REPLICATE)
    (face,) = embedded(pipeline, stranger)[:1]
    member = cv2.imread(str(faces_dir / "lfw" / "Rob_Lowe" / "Rob_Lowe_0003.jpg"))
    (held,) = embedded(pipeline, member)[:1]
    x, y, w, h = face.box
    hx, hy, hw, hh = held.box
    photo = cv2.resize(member[max(0, hy - hh // 10): hy + int(1.05 * hh), max(0, hx - hw // 10): hx + int(1.1 * hw)],
                       None, fx=w / hw, fy=w / hw)
    py, px = y + int(0.2 * h) - photo.shape[0], x + (w - photo.shape[1]) // 2  # just over the top of the head
    frame = stranger.copy()
    frame[py: py + photo.shape[0], px: px + photo.shape[1]] = photo
    found = [f for f in embedded(pipeline, frame) if f.embedding is not None]
    assert len(found) == 2  # the stranger's face and the photo's
    tracked = max(found, key=lambda f: cosine(f.embedding, face.embedding))
    assert cosine(tracked.embedding, face.embedding) > 0.8

    def verified(jpeg: bytes):
        """The face the hub verifies in `jpeg`: the largest it finds (edge.hub.service.verify)."""
        found = embedded(pipeline, cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
        return found[0] if found else None

    whole = verified(crop_jpeg(frame, tracked.box))  # as it was sent: the photo is the largest face
    assert whole is not None and cosine(whole.embedding, held.embedding) > 0.5
    only = verified(crop_jpeg(frame, tracked.box, only_face=True))
    assert only is not None and cosine(only.embedding, face.embedding) > 0.5
    assert cosine(only.embedding, held.embedding) < 0.3
