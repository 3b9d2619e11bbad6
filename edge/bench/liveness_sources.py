"""The liveness data as sources, and every frame's scores and cues, computed once and cached.

A source is one recording set-up (camera, screen, people): `nuaa` (nine subjects, live and
print), `webcam` (a live video and a phone replay to the same webcam) and each folder of
`sources/` (their README). A source is the unit left out in `bench liveness`'s
leave-one-source-out protocol. `neonipun` shows some of `pyimagesearch_dsourav`'s person: both
are one group (`GROUPS`), never on two sides of a split.

Per frame (`features`): the largest face's box and landmarks, the liveness gate (`None`, or why
no verdict: `no_face`, `step_closer`, `step_back`: tight face crops give `step_back`, the x2.7
context cannot be taken), the network's p(live) (fp32 and int8) when the gate lets it, and the
hand-crafted cues (`edge.vision.screen_cues`) on the face box (`face.*`, always when there is a
face) and on the network's context crop (`context.*`, only when the gate lets it). Cached in
~/.cache/edge-verifier/ keyed by the models and the versions of the cues and records, so
re-fitting never re-runs models.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# Sources that share a person: one fold of the protocol.
GROUPS = {"neonipun": "pyimagesearch_dsourav"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
VIDEO_SUFFIXES = (".webm", ".mp4", ".avi", ".mov")
# Part of the cache's key with the models' fingerprints and screen_cues.VERSION: raise it when
# what a record holds changes.
FEATURES_VERSION = 1


def _log(msg: str) -> None:
    print(f"[liveness] {msg}", file=sys.stderr, flush=True)


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def _nuaa_order(path: Path) -> tuple[str, int, str]:
    # A few copies are named like "..._402(1).jpg": ordered beside their frame number.
    session, frame = path.stem.rsplit("_", 1)
    digits = frame.split("(", 1)[0]
    return session, int(digits) if digits.isdigit() else 0, frame


def _video(path: Path, every: int) -> Iterator[np.ndarray]:
    import cv2

    cap = cv2.VideoCapture(str(path))
    i = 0
    try:
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            if i % every == 0:
                yield frame
            i += 1
    finally:
        cap.release()


def iter_source_frames(root: Path, every: int = 1) -> Iterator[tuple[str, str, str, np.ndarray]]:
    """(source, kind, sequence, BGR frame) of every source, in sequence order.

    kind is "live", "print" or "replay"; a sequence is one NUAA session, one video, or one
    folder of frames of a video (neighbouring files are neighbouring frames)."""
    import cv2

    for kind in ("live", "print"):
        paths = sorted((root / "nuaa" / kind).glob("*/*.jpg"), key=_nuaa_order)
        for path in paths[::every]:
            yield "nuaa", kind, f"nuaa/{kind}/{path.stem.rsplit('_', 1)[0]}", cv2.imread(str(path))
    for kind, name in (("live", "real2"), ("replay", "fake2")):
        for frame in _video(root / "webcam" / f"{name}.webm", every):
            yield "webcam", kind, f"webcam/{name}", frame
    base = root / "sources"
    for source in sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []:
        for kind in ("live", "print", "replay"):
            folder = base / source / kind
            if not folder.is_dir():
                continue
            files = sorted((p for p in folder.iterdir() if p.is_file()), key=_natural)
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            for path in images[::every]:
                frame = cv2.imread(str(path))
                if frame is not None:
                    yield source, kind, f"{source}/{kind}", frame
            for path in (p for p in files if p.suffix.lower() in VIDEO_SUFFIXES):
                for frame in _video(path, every):
                    yield source, kind, f"{source}/{kind}/{path.stem}", frame


def group_of(source: str) -> str:
    return GROUPS.get(source, source)


def frame_features(frame: np.ndarray, face, nets: dict) -> dict:
    """One frame's record: gate, scores and cues of its largest face (`face`, or None)."""
    from edge.vision import screen_cues
    from edge.vision.liveness import LivenessNet

    rec: dict = {"shape": list(frame.shape[:2]), "box": None, "landmarks": None, "gate": "no_face",
                 "score": {}, "face": {}, "context": {}}
    if face is None:
        return rec
    box = tuple(int(v) for v in face.box)
    rec.update(box=list(box), landmarks=np.asarray(face.landmarks).tolist(),
               gate=LivenessNet.gate(frame.shape, box))
    fx, fy, fw, fh = box
    rec["face"] = screen_cues.all_cues(screen_cues.face_patch(frame, box))
    if rec["gate"] is None:
        x0, y0, x1, y1 = LivenessNet.crop_rect(frame.shape, box)
        crop = LivenessNet.crop(frame, box)
        sx, sy = crop.shape[1] / max(x1 - x0, 1), crop.shape[0] / max(y1 - y0, 1)
        rec["context"] = screen_cues.all_cues(crop, ((fx - x0) * sx, (fy - y0) * sy, fw * sx, fh * sy))
        rec["score"] = {p: net.score(crop) for p, net in nets.items()}
    return rec


def features(root: Path, models_dir: Path, every: int = 1) -> list[dict]:
    """Every frame's record (source, kind, sequence + `frame_features`), cached on disk."""
    from edge.vision import screen_cues
    from edge.vision.liveness import LivenessNet
    from edge.vision.pipeline import Pipeline
    from edge.vision.runtime import make_session

    pipe = Pipeline.load(models_dir, precision="fp32", threads=1)
    code = f"v{screen_cues.VERSION}-{FEATURES_VERSION}"
    models = "-".join(pipe.fingerprints[r][:8] for r in ("detector", "landmarks", "liveness"))
    cache = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-verifier"
             / f"liveness-features-{models}-{code}-{every}.json")
    if cache.is_file():
        _log(f"features from {cache}")
        return json.loads(cache.read_text())
    nets = {p: LivenessNet(make_session(models_dir / f"liveness.{p}.onnx", 1)) for p in ("fp32", "int8")}
    out = []
    for i, (source, kind, sequence, frame) in enumerate(iter_source_frames(root, every)):
        faces = pipe.detect(frame)
        out.append({"source": source, "group": group_of(source), "kind": kind, "sequence": sequence,
                    **frame_features(frame, faces[0] if faces else None, nets)})
        if (i + 1) % 200 == 0:
            _log(f"features of {i + 1} frames ({source})")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    _log(f"features of {len(out)} frames cached in {cache}")
    return out
