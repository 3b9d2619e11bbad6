"""Hand-crafted presentation-attack cues: what a screen or a print shows that a face does not.

Each cue is a small numpy/OpenCV function of a BGR patch (a few ms at most on 128-192 px), so
the daemon can afford them beside the liveness network; `bench liveness` measures each one
alone and fused, on sources left out of the fitting. Each cue is meant to grow with the attack
it is made for; which way it actually points on real sources is for a fusion to learn (measured:
saturation is lower on most replays, not higher; flatness points opposite ways on different sources).

- `spectral_peaks`: a screen's pixel grid beating against the camera's (moire, screen-door)
  leaves isolated peaks in the 2-D spectrum of the fine texture; skin and cloth give a smooth
  spectrum. Height of the strongest peak over its local background, in log units.
- `straight_edges`: a phone or a print held to the camera has a bezel or paper edge: long
  straight lines around, not across, the face. Length of those lines per crop side.
- `glare`: a glossy screen or photo reflects light sources as clipped, colourless highlights.
  Share of pixels whose three channels are all near saturation.
- `saturation`: a screen's gamut and the double capture shift colour: mean HSV saturation.
- `flatness`: a replay is a camera's picture of another camera's picture, softer than the
  scene: minus the log variance of the Laplacian (higher = blurrier).
"""

from __future__ import annotations

import cv2
import numpy as np

# Raise when a cue's value changes: `bench liveness` caches every frame's cues under it.
VERSION = 1
NAMES = ("spectral_peaks", "straight_edges", "glare", "saturation", "flatness")


def _gray(bgr: np.ndarray) -> np.ndarray:
    return bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def spectral_peaks(bgr: np.ndarray) -> float:
    g = _gray(bgr).astype(np.float32)
    h, w = g.shape
    if min(h, w) < 16:
        return 0.0
    # Fine texture only: the face's shading and the background's shapes are low frequencies.
    fine = g - cv2.GaussianBlur(g, (0, 0), 2.0)
    window = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    spectrum = np.log1p(np.abs(np.fft.fftshift(np.fft.fft2(fine * window)))).astype(np.float32)
    # A peak stands above the median of its 5x5 neighbourhood; a smooth spectrum does not.
    excess = spectrum - cv2.medianBlur(spectrum, 5)
    yy, xx = np.mgrid[:h, :w]
    r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
    band = (r > 0.1) & (r < 0.9)  # neither the remaining DC leak nor the corners' aliasing
    return float(excess[band].max())


def straight_edges(bgr: np.ndarray, face: tuple[float, float, float, float] | None = None) -> float:
    """Long straight lines in `bgr` that do not cross `face` (x, y, w, h in the patch's pixels)."""
    g = _gray(bgr)
    side = float(min(g.shape[:2]))
    median = float(np.median(g))
    edges = cv2.Canny(g, max(0.0, 0.66 * median), min(255.0, 1.33 * median) + 10)
    lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=int(side * 0.2),
                            minLineLength=side * 0.3, maxLineGap=3)
    if lines is None:
        return 0.0
    total = 0.0
    for x0, y0, x1, y1 in lines.reshape(-1, 4).astype(np.float64):
        if face is not None:
            fx, fy, fw, fh = face
            mx, my = (x0 + x1) / 2, (y0 + y1) / 2
            if fx <= mx <= fx + fw and fy <= my <= fy + fh:
                continue  # a line through the face is the face's own (nose, glasses)
        total += float(np.hypot(x1 - x0, y1 - y0))
    return total / side


def glare(bgr: np.ndarray) -> float:
    if bgr.ndim == 2:
        return float((bgr >= 245).mean())
    return float((bgr.min(axis=2) >= 245).mean())


def saturation(bgr: np.ndarray) -> float:
    if bgr.ndim == 2:
        return 0.0
    return float(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[:, :, 1].mean() / 255.0)


def flatness(bgr: np.ndarray) -> float:
    lap = cv2.Laplacian(_gray(bgr), cv2.CV_32F)
    return -float(np.log1p(lap.var()))


def all_cues(bgr: np.ndarray, face: tuple[float, float, float, float] | None = None) -> dict[str, float]:
    """Every cue of one patch, by name (`face`: where the face is in it, for straight_edges)."""
    return {"spectral_peaks": spectral_peaks(bgr), "straight_edges": straight_edges(bgr, face),
            "glare": glare(bgr), "saturation": saturation(bgr), "flatness": flatness(bgr)}


def face_patch(bgr: np.ndarray, box: tuple[float, float, float, float], size: int = 128) -> np.ndarray:
    """The face box alone, at most `size` px a side (area-averaged, so fine texture is not aliased)."""
    x, y, w, h = (int(round(v)) for v in box)
    height, width = bgr.shape[:2]
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
    patch = bgr[y0:y1, x0:x1]
    if patch.size == 0:
        return np.zeros((size, size, 3), np.uint8)
    if max(patch.shape[:2]) > size:
        patch = cv2.resize(patch, (size, size), interpolation=cv2.INTER_AREA)
    return patch
