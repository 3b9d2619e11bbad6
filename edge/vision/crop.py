"""A detected face cut out of its frame, as JPEG bytes for the hub or an event."""

from __future__ import annotations

import cv2


def crop_jpeg(frame, box, margin: float = 0.6, max_side: int = 640) -> bytes:
    """The face with context around it, as JPEG (what the hub's detector needs to re-find it)."""
    h, w = frame.shape[:2]
    x, y, bw, bh = box
    mx, my = int(bw * margin), int(bh * margin)
    crop = frame[max(0, y - my): min(h, y + bh + my), max(0, x - mx): min(w, x + bw + mx)]
    scale = max_side / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return buf.tobytes() if ok else b""
