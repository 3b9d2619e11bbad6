"""Calibration images for static int8 quantization: aligned face crops NOT used for accuracy.

Preferred set: the `train_*` photos of ../shared/faces/five_celebrity (LFW is what accuracy is
reported on, so it is never used here), each also mirrored. The crops are made by the fp32
detector and landmark models just built, exactly as the pipeline makes them at run time.
When ../shared is absent the build falls back to a portrait shipped by a package
(scikit-image's astronaut, if installed) with augmentations, and models.json says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.localenv import shared_faces_dir
from edge.modelpack.errors import ModelBuildError


@dataclass
class CalibrationSet:
    name: str  # recorded in models.json
    crops: list[np.ndarray]  # aligned 112x112 BGR faces (for the embedder)


def calibration_photos(log) -> tuple[str, list[np.ndarray]]:
    from edge.vision.image import load_image

    folder = shared_faces_dir() / "five_celebrity"
    paths = sorted(folder.glob("*/train_*.jpg"))
    if paths:
        return f"five_celebrity train_* ({len(paths)} photos + mirrored)", [load_image(p) for p in paths]
    try:
        from skimage import data as skdata  # optional: only when ../shared is absent
    except ImportError:
        raise ModelBuildError(
            f"no calibration photos: {folder} is absent (set EDGE_VERIFIER_SHARED) "
            "and scikit-image is not installed for the fallback portrait"
        ) from None
    import cv2

    base = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    log("calibration: ../shared absent, using scikit-image's astronaut portrait with augmentations")
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(48):
        angle, scale = rng.uniform(-15, 15), rng.uniform(0.6, 1.2)
        m = cv2.getRotationMatrix2D((256, 200), angle, scale)
        img = cv2.warpAffine(base, m, (512, 512), borderMode=cv2.BORDER_REFLECT)
        img = np.clip(img.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-30, 30), 0, 255).astype(np.uint8)
        frames.append(img)
    return "scikit-image astronaut (48 augmented copies + mirrored)", frames


def build_calibration_set(detector_path: Path, landmarks_path: Path, log) -> CalibrationSet:
    from edge.vision.alignment import align
    from edge.vision.detector import FaceDetector
    from edge.vision.landmarks import LandmarkNet
    from edge.vision.runtime import make_session

    name, frames = calibration_photos(log)
    frames = frames + [f[:, ::-1].copy() for f in frames]
    det = FaceDetector(make_session(detector_path))
    lmk = LandmarkNet(make_session(landmarks_path))
    crops = []
    for i, frame in enumerate(frames):
        boxes = det.infer(frame)
        if len(boxes):
            _, points, scores = lmk.infer(frame, boxes[:1, :4])
            if scores[0] >= 0.5:
                crops.append(align(frame, points[0]))
        if (i + 1) % 50 == 0:
            log(f"calibration crops: {i + 1}/{len(frames)} photos")
    if len(crops) < 16:
        raise ModelBuildError(f"calibration set {name!r} gave only {len(crops)} face crops")
    return CalibrationSet(name, crops)
