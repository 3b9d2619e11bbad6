"""Fixtures the vision tests share."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


@pytest.fixture(scope="module")
def photo(photos) -> np.ndarray:
    """One real photo with one face (five_celebrity Madonna train_1), decoded to BGR: what the
    image tests encode, damage and resize."""
    return cv2.imread(str(photos.path("Madonna", "train_1")))
