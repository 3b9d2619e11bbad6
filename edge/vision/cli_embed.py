"""`edge-verifier embed PATH... --json`: one JSON line per image, streamed.

Models load once, so one process handles thousands of paths (`-` reads paths from stdin,
one per line). Each line is {"path", "faces": [...]} (largest face first) or
{"path", "error": {"code", "message"}} with the face API's codes (-1101 no face, -1102
undecodable, -1300 empty, -1400 format not accepted). Each face carries its `liveness` in that
single frame at the shipped threshold: {score, verdict ("live" | "attack"), reason}, or score and
verdict null with reason "step_closer" / "step_back" where a gate withholds it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

from edge.vision.packs import PACKS


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files; '-' reads paths from stdin")
    parser.add_argument("--json", action="store_true", help="JSON lines on stdout (the only output format)")
    parser.add_argument("--precision", choices=PACKS, default="int8",
                        help="model pack (default int8)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--max-faces", type=int, default=None, help="embed only the N largest faces")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")


def iter_paths(paths: list[str]) -> Iterator[str]:
    for p in paths:
        if p == "-":
            for line in sys.stdin:
                if line.strip():
                    yield line.rstrip("\n")
        else:
            yield p


def embed_path(pipe, path: str, max_faces: int | None = None) -> dict:
    from edge.core.errors import NO_FACE, ApiError
    from edge.vision.image import load_image

    try:
        img = load_image(path)
        faces = pipe.analyze(img, max_faces=max_faces)
        if not faces:
            raise ApiError(NO_FACE, "face detection failed: no face found")
        if pipe.liveness is not None:
            for face in faces:
                pipe.check_liveness(img, face)
    except ApiError as exc:
        return {"path": path, "error": exc.as_dict()}
    return {"path": path, "faces": [f.as_dict() for f in faces]}


def run(args) -> int:
    from edge.vision.packs import ModelPackError
    from edge.vision.pipeline import Pipeline

    try:
        pipe = Pipeline.load(args.models_dir, precision=args.precision, threads=args.threads)
    except ModelPackError as exc:
        print(f"edge-verifier embed: error: {exc}", file=sys.stderr)
        return 2
    n = failed = 0
    for path in iter_paths(args.paths):
        line = embed_path(pipe, path, args.max_faces)
        failed += "error" in line
        n += 1
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()
        if n % 100 == 0:
            print(f"[embed] {n} images, {failed} without a face or unreadable", file=sys.stderr, flush=True)
    return 0
