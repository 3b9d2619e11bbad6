"""A track cue: does the face move with its surroundings, as one picture, or on its own?

At a door the camera is fixed. Around a live face the background stays where it is while the
head moves; a print or a phone held to the camera carries its own "surroundings" (paper, the
replayed video's scene, the bezel) that move with the face as one plane. Between two frames of
a track, points are tracked (pyramidal Lucas-Kanade, kept only when tracking back lands where
they started) inside the face box and in the ring around it (the x2.7 context crop the liveness
network reads, outside the face box). The face's motion is fitted as a similarity (shift,
rotation, scale); then each ring point either stayed put (background), moved as the face's
similarity predicts (it belongs to the same picture, or to the head: hair, neck), or neither.

`independence` = share of ring points that stayed put - share that followed the face: near +1
when the face moved against a still background (live at a fixed camera), near -1 when the whole
crop moved as one (a held print or phone). When the face did not move (less than `MIN_SHIFT`
face widths), nothing can be told: no verdict, which is not a live verdict. A camera that moves
(hand-held) moves the background too and makes a live face look like a picture: the cue is for
fixed cameras only.

Both frames are cut to the earlier frame's context rectangle and scaled so the face box is
`FACE_PX` wide, so the figures do not depend on the camera's resolution, and the cost stays a
few milliseconds per pair whatever the frame size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Raise when a value changes: `bench liveness` caches every frame's motion under it.
VERSION = 1
# The face box's width after scaling (the crop is about 2.7 times that).
FACE_PX = 64.0
# Tolerance, in face widths, for "stayed put" and "moved as the face": ~1 px at FACE_PX.
TOLERANCE = 0.016
# The face must move at least this far (median point shift, face widths) for a verdict: three
# times the tolerance, so no ring point can both stay put and follow the face.
MIN_SHIFT = 3 * TOLERANCE
# Fewest tracked points inside the face box and in the ring for a verdict.
MIN_POINTS = 8
# Largest forward-backward tracking error (px at FACE_PX scale) for a point to be kept.
MAX_FB_ERROR = 0.5
CONTEXT_SCALE = 2.7


@dataclass(frozen=True)
class Motion:
    """How the ring moved against the face between two frames (shifts in face widths)."""
    face_shift: float
    ring_static: float
    ring_follow: float
    face_points: int
    ring_points: int

    @property
    def independence(self) -> float:
        """+1: the face moved, its surroundings stayed (live, fixed camera); -1: they moved as one."""
        return self.ring_static - self.ring_follow


def context_rect(shape: tuple[int, ...], box: tuple[float, float, float, float],
                 scale: float = CONTEXT_SCALE) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 of the box scaled about its centre, clipped to the frame."""
    height, width = shape[:2]
    x, y, w, h = (float(v) for v in box)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = max(int(cx - w * scale / 2), 0), max(int(cy - h * scale / 2), 0)
    x1, y1 = min(int(cx + w * scale / 2) + 1, width), min(int(cy + h * scale / 2) + 1, height)
    return x0, y0, x1, y1


def _gray(bgr: np.ndarray) -> np.ndarray:
    return bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def pair_motion(prev: np.ndarray, cur: np.ndarray, box: tuple[float, float, float, float]) -> Motion | None:
    """The motion from frame `prev` to frame `cur` (same size, BGR or gray) of the face in
    `box` (x, y, w, h in `prev`'s pixels), or None: nothing to tell (the face did not move,
    too few points to track, a box outside the frame)."""
    if prev.shape[:2] != cur.shape[:2]:
        return None
    x, y, w, h = (float(v) for v in box)
    if w < 8 or h < 8:
        return None
    x0, y0, x1, y1 = context_rect(prev.shape, box)
    if x1 - x0 < w or y1 - y0 < h:
        return None
    k = FACE_PX / w
    size = (max(int(round((x1 - x0) * k)), 1), max(int(round((y1 - y0) * k)), 1))
    a = cv2.resize(_gray(prev[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA)
    b = cv2.resize(_gray(cur[y0:y1, x0:x1]), size, interpolation=cv2.INTER_AREA)
    # The face box and the ring in the scaled crop; a margin keeps the face's own edge (hair
    # line, jaw against the background) out of both.
    fx0, fy0, fw, fh = (x - x0) * k, (y - y0) * k, w * k, h * k
    face_mask = np.zeros(a.shape, np.uint8)
    face_mask[int(fy0 + 0.1 * fh):int(fy0 + 0.9 * fh), int(fx0 + 0.15 * fw):int(fx0 + 0.85 * fw)] = 255
    ring_mask = np.full(a.shape, 255, np.uint8)
    ring_mask[max(int(fy0 - 0.15 * fh), 0):int(fy0 + 1.15 * fh), max(int(fx0 - 0.15 * fw), 0):int(fx0 + 1.15 * fw)] = 0
    tracked = _track(a, b, [face_mask, ring_mask], [40, 80])
    if tracked is None:
        return None
    (fp, fq), (rp, rq) = tracked
    shift = float(np.median(np.linalg.norm(fq - fp, axis=1))) / FACE_PX
    if shift < MIN_SHIFT:
        return None  # the face did not move: nothing to compare its surroundings with
    m, _ = cv2.estimateAffinePartial2D(fp, fq, method=cv2.LMEDS)
    if m is None:
        return None
    predicted = rp @ m[:, :2].T + m[:, 2]
    tol = TOLERANCE * FACE_PX
    static = float((np.linalg.norm(rq - rp, axis=1) < tol).mean())
    follow = float((np.linalg.norm(rq - predicted, axis=1) < tol).mean())
    return Motion(round(shift, 4), round(static, 4), round(follow, 4), len(fp), len(rp))


def _track(a: np.ndarray, b: np.ndarray, masks: list[np.ndarray], most: list[int]
           ) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """Per mask: points of `a` under it and where they went in `b`, those that track back to
    where they started (one tracking pass for all masks); None when a mask keeps fewer than
    MIN_POINTS."""
    found = [cv2.goodFeaturesToTrack(a, maxCorners=n, qualityLevel=0.01, minDistance=4, mask=m)
             for m, n in zip(masks, most)]
    if any(p is None or len(p) < MIN_POINTS for p in found):
        return None
    p = np.concatenate(found).astype(np.float32)
    params = {"winSize": (15, 15), "maxLevel": 3,
              "criteria": (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03)}
    q, ok, _ = cv2.calcOpticalFlowPyrLK(a, b, p, None, **params)
    back, ok_back, _ = cv2.calcOpticalFlowPyrLK(b, a, q, None, **params)
    good = ((ok.ravel() == 1) & (ok_back.ravel() == 1)
            & (np.linalg.norm((back - p).reshape(-1, 2), axis=1) < MAX_FB_ERROR))
    p, q = p.reshape(-1, 2), q.reshape(-1, 2)
    out, start = [], 0
    for f in found:
        sel = slice(start, start + len(f))
        start += len(f)
        keep = good[sel]
        if keep.sum() < MIN_POINTS:
            return None
        out.append((p[sel][keep], q[sel][keep]))
    return out


def track_independence(motions: list[Motion | None]) -> float | None:
    """A track's cue: the median independence of its frame pairs that gave a verdict, or None."""
    values = [m.independence for m in motions if m is not None]
    return float(np.median(values)) if values else None
