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

Per frame of a continuous sequence (NUAA's sessions, every video), `motion`: how its face moved
against its surroundings since the frame the daemon would have processed before it
(`edge.vision.track_motion`; `MOTION_RATE` frames a second), `{}` when there is nothing to tell
(the face did not move, too few points, the first frame, or a folder of evenly spaced frames,
which are too far apart). Cached beside the features.
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
# Frames a second the daemon processes by default (`[camera] rate`): the motion cue compares a
# video frame with the one this long before it, as the daemon would see them.
MOTION_RATE = 5.0


def _log(msg: str) -> None:
    print(f"[liveness] {msg}", file=sys.stderr, flush=True)


def _natural(path: Path) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def nuaa_order(path: Path) -> tuple[str, int, str]:
    # A few copies are named like "..._402(1).jpg": ordered beside their frame number.
    session, frame = path.stem.rsplit("_", 1)
    digits = frame.split("(", 1)[0]
    return session, int(digits) if digits.isdigit() else 0, frame


def video_fps(path: Path) -> float:
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        return float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        cap.release()


def motion_gaps(root: Path, every: int = 1) -> dict[str, int]:
    """Per continuous sequence, how many yielded frames back the motion cue looks: a video's
    frames 1 / MOTION_RATE seconds apart, NUAA's neighbouring files (already every 5th frame of
    its webcam). Folders of `sources/` are evenly spaced frames, seconds apart: not listed."""
    gaps = {}
    for kind in ("live", "print"):
        for session in {p.stem.rsplit("_", 1)[0] for p in (root / "nuaa" / kind).glob("*/*.jpg")}:
            gaps[f"nuaa/{kind}/{session}"] = 1
    videos = [(f"webcam/{n}", root / "webcam" / f"{n}.webm") for n in ("real2", "fake2")]
    base = root / "sources"
    for path in sorted(base.glob("*/*/*")) if base.is_dir() else []:
        if path.suffix.lower() in VIDEO_SUFFIXES:
            source, kind = path.parent.parent.name, path.parent.name
            videos.append((f"{source}/{kind}/{path.stem}", path))
    for sequence, path in videos:
        if path.is_file():
            gaps[sequence] = max(1, round(video_fps(path) / MOTION_RATE / every))
    return gaps


def video_frames(path: Path, every: int) -> Iterator[np.ndarray]:
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
        paths = sorted((root / "nuaa" / kind).glob("*/*.jpg"), key=nuaa_order)
        for path in paths[::every]:
            yield "nuaa", kind, f"nuaa/{kind}/{path.stem.rsplit('_', 1)[0]}", cv2.imread(str(path))
    for kind, name in (("live", "real2"), ("replay", "fake2")):
        for frame in video_frames(root / "webcam" / f"{name}.webm", every):
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
                for frame in video_frames(path, every):
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
    from edge.vision import screen_cues, track_motion
    from edge.vision.pipeline import Pipeline

    pipe = Pipeline.load(models_dir, precision="fp32", threads=1)
    code = f"v{screen_cues.VERSION}-{FEATURES_VERSION}"
    models = "-".join(pipe.fingerprints[r][:8] for r in ("detector", "landmarks", "liveness"))
    cache = (Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-verifier"
             / f"liveness-features-{models}-{code}-{every}.json")
    if cache.is_file():
        _log(f"features from {cache}")
        out = json.loads(cache.read_text())
    else:
        out = _compute_features(root, models_dir, pipe, every)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(out))
        _log(f"features of {len(out)} frames cached in {cache}")
    moves = motion(root, out, cache.parent / f"liveness-motion-{models}-m{track_motion.VERSION}-{every}.json", every)
    for rec, m in zip(out, moves):
        rec["motion"] = m
    return out


def _compute_features(root: Path, models_dir: Path, pipe, every: int) -> list[dict]:
    from edge.vision.liveness import LivenessNet
    from edge.vision.runtime import make_session

    nets = {p: LivenessNet(make_session(models_dir / f"liveness.{p}.onnx", 1)) for p in ("fp32", "int8")}
    out = []
    for i, (source, kind, sequence, frame) in enumerate(iter_source_frames(root, every)):
        faces = pipe.detect(frame)
        out.append({"source": source, "group": group_of(source), "kind": kind, "sequence": sequence,
                    **frame_features(frame, faces[0] if faces else None, nets)})
        if (i + 1) % 200 == 0:
            _log(f"features of {i + 1} frames ({source})")
    return out


def motion(root: Path, records: list[dict], cache: Path, every: int = 1) -> list[dict]:
    """Per record (same order as `iter_source_frames`), the motion cue of its frame against the
    frame `motion_gaps` before it in its sequence, with the earlier frame's face box: `{}` when
    there is none. Cached in `cache`."""
    from edge.vision import track_motion

    if cache.is_file():
        _log(f"motion from {cache}")
        return json.loads(cache.read_text())
    gaps = motion_gaps(root, every)
    out: list[dict] = []
    recent: dict[str, list[tuple[int, np.ndarray]]] = {}
    for i, (_, _, sequence, frame) in enumerate(iter_source_frames(root, every)):
        if records[i]["sequence"] != sequence:
            raise ValueError(f"frame {i} is {sequence}, its record {records[i]['sequence']}: stale cache?")
        out.append({})
        gap = gaps.get(sequence)
        if gap is None:
            continue
        held = recent.setdefault(sequence, [])
        held.append((i, frame))
        del held[:-gap - 1]
        if len(held) <= gap:
            continue
        j, earlier = held[0]
        if records[j]["box"] is None:
            continue
        m = track_motion.pair_motion(earlier, frame, tuple(records[j]["box"]))
        if m is not None:
            out[-1] = {"independence": m.independence, "static": m.ring_static, "follow": m.ring_follow,
                       "shift": m.face_shift}
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    _log(f"motion of {sum(bool(m) for m in out)} of {len(out)} frames cached in {cache}")
    return out
