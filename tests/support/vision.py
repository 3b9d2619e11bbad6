"""Fixtures of the vision tests (real parts, started for the test session).

`pipeline` (int8, what the edge runs) and `pipeline_fp32` are loaded once per session from the
built models, so every test module can use the real models without paying the load twice.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def pipeline(models_dir):
    from edge.vision import Pipeline

    return Pipeline.load(models_dir, precision="int8", threads=1)


@pytest.fixture(scope="session")
def pipeline_fp32(models_dir):
    from edge.vision import Pipeline

    return Pipeline.load(models_dir, precision="fp32", threads=1)


def side_by_side(left: bytes, right: bytes, right_scale: float) -> bytes:
    """One JPEG of two photos side by side, the right one scaled by `right_scale` (a photo of
    two people: two faces of a size, or one in the background)."""
    import cv2
    import numpy as np

    a = cv2.imdecode(np.frombuffer(left, np.uint8), cv2.IMREAD_COLOR)
    b = cv2.imdecode(np.frombuffer(right, np.uint8), cv2.IMREAD_COLOR)
    b = cv2.resize(b, None, fx=right_scale, fy=right_scale)
    canvas = np.full((max(a.shape[0], b.shape[0]), a.shape[1] + b.shape[1], 3), 255, np.uint8)
    canvas[:a.shape[0], :a.shape[1]], canvas[:b.shape[0], a.shape[1]:] = a, b
    return cv2.imencode(".jpg", canvas)[1].tobytes()

