"""The result type of detection: one face in one frame."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.vision.liveness import Liveness
from edge.vision.quality import Quality


@dataclass
class Face:
    box: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    score: float
    landmarks: np.ndarray  # (5, 2) float32: left eye, right eye, nose, left mouth, right mouth
    quality: Quality
    embedding: np.ndarray | None = None
    liveness: Liveness | None = None  # set by Pipeline.check_liveness
    # The 112x112 aligned crop, kept so that embed() does not warp the frame twice.
    aligned: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def pose(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees, estimated from the landmarks."""
        return self.quality.yaw, self.quality.pitch, self.quality.roll

    def as_dict(self, with_embedding: bool = True) -> dict:
        d = {
            "box": [int(v) for v in self.box],
            "score": round(float(self.score), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "quality": self.quality.as_dict(),
        }
        if self.liveness is not None:
            d["liveness"] = self.liveness.as_dict()
        if with_embedding and self.embedding is not None:
            d["embedding"] = [round(float(v), 6) for v in self.embedding]
        return d
