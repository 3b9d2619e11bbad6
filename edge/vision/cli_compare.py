"""`edge-verifier compare A B --json` and `compare --pairs FILE --json`.

Each image contributes its largest face. Output: {"similarity", "confidence", "decision"}
(cosine similarity, the API's 0-100 confidence, accept/uncertain/reject under the shipped
thresholds of edge.core.matcher); with --pairs one line per pair with "a" and "b", each distinct
image embedded once. An image without a usable face gives {"error": {"code", "message"}}
(plus "a"/"b", and "image": which one failed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edge.vision.packs import PACKS


def add_arguments(parser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="two images A B")
    parser.add_argument("--pairs", type=Path, default=None, help="file of tab-separated path pairs")
    parser.add_argument("--json", action="store_true", help="JSON on stdout (the only output format)")
    parser.add_argument("--precision", choices=PACKS, default="int8",
                        help="model pack (default int8)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)


class _Embeddings:
    """Largest-face embedding per path, computed once per distinct path."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.cache: dict[str, object] = {}

    def get(self, path: str):
        if path not in self.cache:
            from edge.core.errors import NO_FACE, ApiError
            from edge.vision.image import load_image

            try:
                faces = self.pipe.analyze(load_image(path), max_faces=1)
                if not faces:
                    raise ApiError(NO_FACE, "face detection failed: no face found")
                self.cache[path] = faces[0].embedding
            except ApiError as exc:
                self.cache[path] = exc
        return self.cache[path]


def compare(emb: _Embeddings, a: str, b: str, thresholds) -> dict:
    from edge.core.errors import ApiError
    from edge.core.matcher import confidence, cosine

    ea, eb = emb.get(a), emb.get(b)
    for which, e in (("a", ea), ("b", eb)):
        if isinstance(e, ApiError):
            return {"error": {**e.as_dict(), "image": which}}
    score = cosine(ea, eb)
    return {
        "similarity": round(score, 4),
        "confidence": confidence(score, thresholds),
        "decision": thresholds.decide(score).value,
    }


def run(args) -> int:
    if args.pairs is None and len(args.images) != 2:
        print("edge-verifier compare: error: give two images, or --pairs FILE", file=sys.stderr)
        return 2
    if args.pairs is not None and args.images:
        print("edge-verifier compare: error: give either two images or --pairs, not both", file=sys.stderr)
        return 2
    from edge.vision.packs import ModelPackError
    from edge.vision.pipeline import Pipeline

    try:
        pipe = Pipeline.load(args.models_dir, precision=args.precision, threads=args.threads)
    except ModelPackError as exc:
        print(f"edge-verifier compare: error: {exc}", file=sys.stderr)
        return 2
    from edge.core.matcher import thresholds_for

    emb, thresholds = _Embeddings(pipe), thresholds_for(args.precision)
    if args.pairs is None:
        out = compare(emb, *args.images, thresholds)
        print(json.dumps(out))
        return 1 if "error" in out else 0
    try:
        lines = args.pairs.read_text().splitlines()
    except OSError as exc:
        print(f"edge-verifier compare: error: cannot read {args.pairs}: {exc.strerror}", file=sys.stderr)
        return 2
    for i, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2:
            message = "invalid parameter: expected two tab-separated paths"
            print(json.dumps({"line": i, "error": {"code": 21, "message": message}}))
            continue
        a, b = parts
        sys.stdout.write(json.dumps({"a": a, "b": b, **compare(emb, a, b, thresholds)}) + "\n")
        sys.stdout.flush()
        if i % 100 == 0:
            print(f"[compare] {i}/{len(lines)} pairs", file=sys.stderr, flush=True)
    return 0
