"""The edge's own /face/verify decides like its camera path: the quality gate first, then the
threshold of the face's condition band. It decided every face it found at the threshold of a
large frontal one: a face of 30 px, or turned 38°, which the camera path never decides on, was
`ismatch`, and a small or turned face lost its band's margin. Real models, real photos."""

from __future__ import annotations

import cv2
import pytest

from edge.core import errors
from edge.core.errors import ApiError
from edge.core.matcher import Enrolled, Gallery, thresholds_for
from edge.daemon.decide import Decider
from edge.daemon.service import EdgeService
from edge.vision import Pipeline


class Recording(Decider):
    """The real decider, noting the condition each verify is decided under."""

    def __init__(self):
        super().__init__(None)
        self.conditions: list = []

    def verify(self, gallery, embedding, person_id, image_for_cloud=None, condition=None, look=None):
        self.conditions.append(condition)
        return super().verify(gallery, embedding, person_id, image_for_cloud, condition=condition, look=look)


@pytest.fixture(scope="module")
def service(models_dir, faces_dir):
    pipeline = Pipeline.load(models_dir, precision="int8", threads=1)
    enrolled = []
    for i in (1, 2, 3):
        img = cv2.imread(str(faces_dir / "five_celebrity" / "Madonna" / f"train_{i}.jpg"))
        (face,) = pipeline.detect(img)[:1]
        enrolled.append(Enrolled("madonna", f"f{i}", pipeline.embed(img, face), ("staff",), "Madonna"))
    gallery = Gallery(enrolled, thresholds_for("int8", false_admit_rate=1e-3), version="t")
    return EdgeService(pipeline, lambda: gallery, Recording(), liveness="off")


def _jpeg(img) -> bytes:
    return cv2.imencode(".jpg", img)[1].tobytes()


def test_a_face_the_camera_would_not_decide_on_is_refused_not_decided(service, faces_dir):
    photo = cv2.imread(str(faces_dir / "five_celebrity" / "Madonna" / "val_1.jpg"))
    (face,) = service.pipeline.detect(photo)[:1]
    tiny = cv2.resize(photo, None, fx=30 / face.box[2], fy=30 / face.box[2], interpolation=cv2.INTER_AREA)
    with pytest.raises(ApiError) as refused:
        service.verify("app", "madonna", _jpeg(tiny))
    assert refused.value.code == errors.NO_FACE and "quality gate" in refused.value.message


def test_a_face_is_decided_under_its_own_condition(service, faces_dir):
    photo = cv2.imread(str(faces_dir / "five_celebrity" / "Madonna" / "val_1.jpg"))
    answer = service.verify("app", "madonna", _jpeg(photo))
    assert answer["ismatch"] is True
    (condition,) = service.decider.conditions[-1:]
    (face,) = service.pipeline.detect(photo)[:1]
    assert condition is not None and condition.size == pytest.approx(face.quality.size, abs=3)  # (re-encoded)
