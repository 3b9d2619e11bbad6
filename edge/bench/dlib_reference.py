"""The dlib face_recognition pipeline as `bench speed --reference dlib` runs it.

The same steps `face_recognition.face_encodings` takes with its defaults (HOG detector with one
upsample, 5-point shape predictor, ResNet descriptor with one jitter), called on dlib directly so
that only `dlib-bin` and `face-recognition-models` are needed. dlib runs these on one thread.
Same output protocol as edge.bench.speed_worker.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frame", required=True)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    import cv2
    import dlib
    import face_recognition_models as frm

    from edge.bench.timing import median_ms, peak_rss_mb

    rgb = cv2.cvtColor(cv2.imread(args.frame), cv2.COLOR_BGR2RGB)
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
    encoder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    rects = detector(rgb, 1)
    if len(rects) != 1:
        raise SystemExit(f"expected one face in the benchmark frame, dlib found {len(rects)}")
    shape = predictor(rgb, rects[0])
    encoder.compute_face_descriptor(rgb, shape, 1)
    print("first", flush=True)

    stages = {
        "detect_ms": median_ms(lambda: detector(rgb, 1), args.repeats),
        "landmarks_ms": median_ms(lambda: predictor(rgb, rects[0]), args.repeats),
        # dlib aligns inside compute_face_descriptor: its align time is part of embed_ms
        "embed_ms": median_ms(lambda: encoder.compute_face_descriptor(rgb, shape, 1), args.repeats),
    }
    stages["per_face_ms"] = round(sum(stages.values()), 3)
    result = {
        "name": "dlib face_recognition (HOG, 5-point, ResNet-34 descriptor)",
        "dlib": dlib.__version__,
        "threads": {"1": stages},
        "per_face_ms": stages["per_face_ms"],
        "peak_rss_mb": peak_rss_mb(),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
