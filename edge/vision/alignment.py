"""Five-point similarity alignment to the 112x112 ArcFace template: the embedders were trained
on faces aligned to it, so a face must be aligned the same way to be embedded comparably."""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 112
# left eye, right eye, nose tip, left mouth corner, right mouth corner
TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float32,
)


def similarity_transform(landmarks: np.ndarray) -> np.ndarray:
    """2x3 least-squares similarity (rotation, uniform scale, shift) from landmarks to TEMPLATE."""
    src = np.asarray(landmarks, dtype=np.float64)
    dst = TEMPLATE.astype(np.float64)
    # Umeyama (1991) without reflection: the closed form of the least-squares similarity.
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rot = u @ np.diag(d) @ vt
    var_s = (s0**2).sum() / len(src)
    scale = (sig * d).sum() / var_s if var_s > 0 else 1.0
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align(bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The 112x112 BGR face crop the embedders expect."""
    m = similarity_transform(landmarks)
    return cv2.warpAffine(bgr, m, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
