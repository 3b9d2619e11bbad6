"""Calibration images for static int8 quantization (the embedders' aligned crops and, from the
same frames, the liveness model's crops: liveness.py), NOT used for accuracy, and the
input of the int8 activation ranges that `edge-verifier models calibrate` measures (measure.py)
and commits (table.py). `models build` reads that table and runs none of this.

The photos are the manifest's `calibration` files: package files pinned by sha256 like the
models (two packages' demo and test photos, 29 faces), so every machine that builds the
manifest quantizes on the same crops and gets the same pack, with or without ../shared. Each
photo is used as it is, mirrored, and in two fixed pseudo-random variants of each (rotation,
scale, brightness, contrast; seeded, so the same on every machine). The crops are made by the
fp32 detector and landmark models just built, exactly as the pipeline makes them at run time,
for every face in the photo (most are group photos). That fp32 inference, and the calibration
runs over the crops, round differently on another instruction set: which is why the ranges are
measured once and committed rather than re-measured by every build.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.modelpack.errors import ModelBuildError
from edge.modelpack.manifest import CALIBRATION, Source

VARIANTS = 2  # augmented copies of each photo and of its mirror image
MAX_SIDE = 1280  # photos are shrunk to this first: faces the size a door camera sees, less work


@dataclass
class CalibrationSet:
    name: str  # recorded in models.json
    crops: list[np.ndarray]  # aligned 112x112 BGR faces (for the embedder)


def photos_fingerprint(sources: list[Source]) -> str:
    """Which calibration photos the manifest lists (recorded with every int8 file, so a change
    of photos rebuilds the steps that quantize on them)."""
    listed = [f"{s.package}@{s.version}:{f.path}:{f.sha256}" for s in sources for f in s.files
              if f.role == CALIBRATION]
    return hashlib.sha256("\n".join(listed).encode()).hexdigest()[:16]


def calibration_frames(photos: list[tuple[str, bytes]]) -> tuple[str, list[np.ndarray]]:
    """The set's name and its frames: each photo, its mirror image, and their seeded variants."""
    import cv2

    from edge.vision.image import decode_image

    if not photos:
        raise ModelBuildError("the manifest lists no calibration photos (role \"calibration\")")
    rng = np.random.default_rng(0)
    frames = []
    for _, data in photos:
        img = decode_image(data)
        scale = MAX_SIDE / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        for base in (img, np.ascontiguousarray(img[:, ::-1])):
            frames.append(base)
            h, w = base.shape[:2]
            for _ in range(VARIANTS):
                angle, zoom = rng.uniform(-12, 12), rng.uniform(0.6, 1.0)
                gain, offset = rng.uniform(0.6, 1.3), rng.uniform(-30, 30)
                m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, zoom)
                warped = cv2.warpAffine(base, m, (w, h), borderMode=cv2.BORDER_REFLECT)
                frames.append(np.clip(warped.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8))
    packages = sorted({name.split(":", 1)[0] for name, _ in photos})
    return f"{len(photos)} photos of {', '.join(packages)} (+ mirrored, {VARIANTS} variants each)", frames


def build_calibration_set(photos: list[tuple[str, bytes]], detector_path: Path, landmarks_path: Path,
                          log) -> CalibrationSet:
    from edge.vision.alignment import align
    from edge.vision.detector import FaceDetector
    from edge.vision.landmarks import LandmarkNet
    from edge.vision.runtime import make_session

    name, frames = calibration_frames(photos)
    det = FaceDetector(make_session(detector_path))
    lmk = LandmarkNet(make_session(landmarks_path))
    crops = []
    for i, frame in enumerate(frames):
        boxes = det.infer(frame)
        if len(boxes):
            _, points, scores = lmk.infer(frame, boxes[:, :4])
            crops += [align(frame, p) for p, s in zip(points, scores, strict=True) if s >= 0.5]
        if (i + 1) % 20 == 0:
            log(f"calibration crops: {i + 1}/{len(frames)} photos, {len(crops)} faces")
    if len(crops) < 16:
        raise ModelBuildError(f"calibration set {name!r} gave only {len(crops)} face crops")
    return CalibrationSet(name, crops)

