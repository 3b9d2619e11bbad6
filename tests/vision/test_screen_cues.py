"""The hand-crafted presentation-attack cues on synthetic images: each must tell the pattern it
is made for from a smooth, face-like image."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.vision import screen_cues

SIZE = 128


def _face_like(seed: int = 0) -> np.ndarray:
    """A smooth skin-toned blob with soft shading and a little sensor noise: no periodic texture,
    no straight edges, no clipped highlights."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    shade = np.exp(-(((xx - 64) / 40) ** 2 + ((yy - 60) / 50) ** 2))
    base = np.stack([110 + 60 * shade, 130 + 70 * shade, 170 + 60 * shade], axis=2)
    base += rng.normal(0, 3, base.shape)
    return np.clip(base, 0, 255).astype(np.uint8)


def _moire(seed: int = 0) -> np.ndarray:
    """The same face seen through a screen: a fine periodic grating (a pixel grid beating with
    the camera's) over it."""
    yy, xx = np.mgrid[:SIZE, :SIZE].astype(np.float32)
    grating = 18 * np.sin(2 * np.pi * (xx * 0.23 + yy * 0.07))
    return np.clip(_face_like(seed).astype(np.float32) + grating[..., None], 0, 255).astype(np.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spectral_peaks_find_a_grating_not_a_smooth_face(seed):
    assert screen_cues.spectral_peaks(_moire(seed)) > screen_cues.spectral_peaks(_face_like(seed)) + 1.0


def test_straight_edges_find_a_bezel_around_the_face_not_lines_through_it():
    face = _face_like()
    framed = face.copy()
    cv2.rectangle(framed, (10, 8), (118, 120), (20, 20, 20), 3)  # a phone's bezel around the face
    box = (34.0, 30.0, 60.0, 64.0)
    assert screen_cues.straight_edges(face, box) == 0.0
    assert screen_cues.straight_edges(framed, box) > 1.0
    # A line across the middle of the face (glasses, a nose) is not a bezel.
    crossed = face.copy()
    cv2.line(crossed, (40, 62), (88, 62), (20, 20, 20), 3)
    assert screen_cues.straight_edges(crossed, box) == 0.0


def test_glare_counts_clipped_colourless_highlights():
    face = _face_like()
    glossy = face.copy()
    cv2.circle(glossy, (80, 40), 12, (255, 255, 255), -1)  # a lamp reflected in a screen
    assert screen_cues.glare(face) == 0.0
    assert screen_cues.glare(glossy) == pytest.approx(np.pi * 12 ** 2 / SIZE ** 2, rel=0.2)
    # A saturated colour (a red shirt) is not glare: one channel clipped is not all three.
    red = face.copy()
    red[:, :40] = (0, 0, 255)
    assert screen_cues.glare(red) == 0.0


def test_saturation_measures_colour_and_flatness_softness():
    face = _face_like()
    grey = cv2.cvtColor(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
    assert screen_cues.saturation(face) > screen_cues.saturation(grey)
    blurred = cv2.GaussianBlur(face, (0, 0), 3)  # a picture of a picture is softer
    assert screen_cues.flatness(blurred) > screen_cues.flatness(face)


def test_all_cues_names_and_face_patch():
    cues = screen_cues.all_cues(_face_like(), (30, 30, 60, 60))
    assert tuple(cues) == screen_cues.NAMES
    big = np.zeros((480, 640, 3), np.uint8)
    assert screen_cues.face_patch(big, (100, 50, 300, 300)).shape == (128, 128, 3)
    assert screen_cues.face_patch(big, (600, 50, 30, 30)).shape == (30, 30, 3)
    assert screen_cues.face_patch(big, (700, 500, 30, 30)).shape == (128, 128, 3)  # outside: blank
