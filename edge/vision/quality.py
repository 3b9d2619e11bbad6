"""Quality gate: is a detected face good enough to enrol or to decide on?

Measures size (shorter side of the face box, in frame pixels), sharpness (variance of the
Laplacian of the aligned 112x112 grey crop, so it does not depend on the frame's resolution)
and head pose estimated from the five landmarks, and names the first reason to refuse.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Defaults, chosen so that the LFW photos (faces of ~100 px, JPEG-soft) pass almost always:
# their sharpness is >= 24 (1st percentile 53); a Gaussian blur of sigma 3 on such a face gives 9-13.
MIN_SIZE = 40.0
MIN_SHARPNESS = 20.0
MAX_YAW = 40.0
MAX_PITCH = 35.0
MAX_ROLL = 45.0

# Nose-tip depth in front of the eye plane relative to the eye distance (anthropometric
# average, ~35 mm / 63 mm): turns the nose's offset from the eye/mouth midline into an angle.
_NOSE_DEPTH = 0.55
# Nose height between the eye line (0) and the mouth line (1) on the frontal ArcFace template.
_NOSE_LEVEL = 0.4946


@dataclass
class Quality:
    ok: bool
    reason: str | None  # "too_small" | "blurred" | "off_frontal"
    size: float
    sharpness: float
    yaw: float
    pitch: float
    roll: float

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "size": round(self.size, 1),
            "sharpness": round(self.sharpness, 1),
            "yaw": round(self.yaw, 1),
            "pitch": round(self.pitch, 1),
            "roll": round(self.roll, 1),
        }


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from 5 landmarks; positive yaw = nose towards image right."""
    p = np.asarray(landmarks, dtype=np.float64)
    le, re, nose, lm, rm = p
    dx, dy = re - le
    roll = math.degrees(math.atan2(dy, dx))
    # Undo the roll so that yaw and pitch are measured along the face's own axes.
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    q = (p - p.mean(0)) @ rot.T
    le, re, nose, lm, rm = q
    eye_mid, mouth_mid = (le + re) / 2, (lm + rm) / 2
    eye_dist = max(float(np.linalg.norm(re - le)), 1e-6)
    mid_x = (eye_mid[0] + mouth_mid[0]) / 2
    yaw = math.degrees(math.atan((nose[0] - mid_x) / (_NOSE_DEPTH * eye_dist)))
    face_h = max(float(mouth_mid[1] - eye_mid[1]), 1e-6)
    level = (nose[1] - eye_mid[1]) / face_h
    # The frontal face height is ~ eye_dist (template: 40.7 vs 35.2), depth as above.
    sin_pitch = float(np.clip((level - _NOSE_LEVEL) * face_h / (_NOSE_DEPTH * eye_dist), -1.0, 1.0))
    pitch = math.degrees(math.asin(sin_pitch))
    return yaw, pitch, roll


def sharpness(aligned_bgr: np.ndarray) -> float:
    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY)
    # The central part only: background and hair edges would make a blurred face look sharp.
    return float(cv2.Laplacian(grey[16:104, 16:96], cv2.CV_64F).var())


def assess(box: tuple[int, int, int, int], landmarks: np.ndarray, aligned_bgr: np.ndarray) -> Quality:
    size = float(min(box[2], box[3]))
    sharp = sharpness(aligned_bgr)
    yaw, pitch, roll = head_pose(landmarks)
    reason = None
    if size < MIN_SIZE:
        reason = "too_small"
    elif abs(yaw) > MAX_YAW or abs(pitch) > MAX_PITCH or abs(roll) > MAX_ROLL:
        reason = "off_frontal"
    elif sharp < MIN_SHARPNESS:
        reason = "blurred"
    return Quality(reason is None, reason, size, sharp, yaw, pitch, roll)
