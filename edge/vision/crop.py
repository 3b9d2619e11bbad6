"""A detected face cut out of its frame, as JPEG bytes for the hub or an event."""

from __future__ import annotations

import cv2
import numpy as np

# Of a crop `only_face`, what is kept around the face box (a share of its side): the rest is grey.
FACE_KEPT = 0.2


def crop_jpeg(frame, box, margin: float = 0.6, max_side: int = 640, only_face: bool = False) -> bytes:
    """The face with context around it, as JPEG (what the hub's detector needs to re-find it).
    `only_face`: everything but the face box (and FACE_KEPT around it) painted grey, so that the
    face the hub verifies is this one. It verifies the largest face it finds: a member's photo
    held above a stranger's head was the largest in the crop, and the hub said it was the
    member."""
    h, w = frame.shape[:2]
    x, y, bw, bh = box
    mx, my = int(bw * margin), int(bh * margin)
    top, left = max(0, y - my), max(0, x - mx)
    crop = frame[top: min(h, y + bh + my), left: min(w, x + bw + mx)]
    if only_face:
        kx, ky = int(bw * FACE_KEPT), int(bh * FACE_KEPT)
        masked = np.full_like(crop, 128)
        fy0, fx0 = max(0, y - ky - top), max(0, x - kx - left)
        fy1, fx1 = y + bh + ky - top, x + bw + kx - left
        masked[fy0:fy1, fx0:fx1] = crop[fy0:fy1, fx0:fx1]
        crop = masked
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes() if ok else b""
