"""One variant of `bench speed` (int8 or fp32), run in its own process by edge.bench.speed.

Prints "first" as soon as one whole frame has been analysed (the parent's cold-start mark),
then one JSON object: per-stage medians on one thread and on all threads, and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frame", required=True)
    parser.add_argument("--precision", required=True)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models-dir")
    args = parser.parse_args()

    from edge.bench.timing import peak_rss_mb
    from edge.vision import Pipeline, load_image

    frame = load_image(args.frame)
    result: dict = {"threads": {}}
    for threads in (1, os.cpu_count() or 1):
        pipe = Pipeline.load(args.models_dir, precision=args.precision, threads=threads)
        faces = pipe.analyze(frame)
        if len(faces) != 1:
            raise SystemExit(f"expected one face in the benchmark frame, found {len(faces)}")
        if threads == 1:
            print("first", flush=True)
        result["threads"][str(threads)] = _stage_times(pipe, frame, args.repeats)
    result["per_face_ms"] = result["threads"]["1"]["per_face_ms"]
    result["fingerprint"] = pipe.fingerprint
    result["peak_rss_mb"] = peak_rss_mb()
    print(json.dumps(result), flush=True)
    return 0


def _stage_times(pipe, frame, repeats: int) -> dict[str, float]:
    """Median milliseconds of each stage on one face, their sum, and the whole analyze() call."""
    from edge.bench.timing import median_ms

    boxes = pipe.detector.infer(frame)
    landmarks = pipe.landmarks.infer(frame, boxes[:, :4])[1][0]
    aligned = pipe.align(frame, landmarks)
    stages = {
        "detect_ms": median_ms(lambda: pipe.detector.infer(frame), repeats),
        "landmarks_ms": median_ms(lambda: pipe.landmarks.infer(frame, boxes[:1, :4]), repeats),
        "align_ms": median_ms(lambda: pipe.align(frame, landmarks), repeats),
        "embed_ms": median_ms(lambda: pipe.embedder.infer(aligned), repeats),
    }
    stages["per_face_ms"] = round(sum(stages.values()), 3)
    stages["analyze_ms"] = median_ms(lambda: pipe.analyze(frame), repeats)
    return stages


if __name__ == "__main__":
    sys.exit(main())
