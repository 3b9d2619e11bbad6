"""`edge-verifier audit --config hub.toml`: what in the enrolment raises false admits.

Reads the hub's store (no models run) and reports, per appid:

- look-alikes: pairs of enrolled persons whose closest faces score at or above the pack's 1:1
  accept threshold (FAR 1e-4 per pair, so about 1 in 10,000 pairs of strangers): twins, or one
  person enrolled twice under two ids. At the door the margin rule holds both back, and a
  stranger resembling both has two chances;
- weak faces: enrolled faces that fail the daemon's quality gate (too small, off frontal,
  blurred), re-checked from the geometry and sharpness stored at enrolment. A poor enrolment
  photo lowers the person's own scores and sits closer to everyone else's;
- photo counts: persons with fewer than 3 faces (more members turned away on the first try) or
  more than 5 (past five the edge's default rule scores a person by their best face alone, which
  admits them less often): docs/daemon.md, Known limits.

JSON on stdout; exit 0 whatever is found (it is a report, not a check).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Iterable

import numpy as np

from edge.core.false_admit import template_photos

# The photo counts the edge's default identify rule admits members best at: its template tables
# cover 1..5 (past them a person is scored by best face alone) and at 1 and 2 the per-K margins
# cost members (bench door --templates). The console's person page says the same.
GOOD_PHOTO_COUNTS = range(3, template_photos("int8") + 1)


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="hub TOML (see `edge-verifier config example hub`)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="report person pairs scoring at least this (default: the pack's accept)")


def look_alikes(faces: Iterable, threshold: float) -> list[dict]:
    """Pairs of persons whose best face-to-face cosine is >= threshold, highest first. `faces`
    are edge.core.matcher.Enrolled, as the store's embeddings() gives them."""
    rows = list(faces)
    if len(rows) < 2:
        return []
    m = np.stack([np.asarray(r.embedding, dtype=np.float32) for r in rows])
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    persons = np.array([r.person_id for r in rows])
    best: dict[tuple[str, str], tuple[float, str, str]] = {}
    block = 1024  # bounded memory at 20,000 persons: one block of rows at a time
    for s in range(0, len(rows), block):
        sims = m[s: s + block] @ m.T
        for i, j in zip(*np.nonzero(sims >= threshold)):
            a, b = s + int(i), int(j)
            if a >= b or persons[a] == persons[b]:
                continue
            key = tuple(sorted((str(persons[a]), str(persons[b]))))
            score = float(sims[i, j])
            if key not in best or score > best[key][0]:
                best[key] = (score, rows[a].face_id, rows[b].face_id)
    return [{"persons": list(k), "score": round(v[0], 4), "faces": [v[1], v[2]]}
            for k, v in sorted(best.items(), key=lambda kv: -kv[1][0])]


def weak_face(face) -> str | None:
    """The quality gate's reason to refuse a stored face (a FaceRecord), or None."""
    from edge.vision import quality

    if min(face.box[2], face.box[3]) < quality.MIN_SIZE:
        return "too_small"
    if abs(face.yaw) > quality.MAX_YAW or abs(face.pitch) > quality.MAX_PITCH or abs(face.roll) > quality.MAX_ROLL:
        return "off_frontal"
    if face.sharpness < quality.MIN_SHARPNESS:
        return "blurred"
    return None


def photo_counts(faces: Iterable) -> dict[str, list[dict]]:
    """Persons whose face count is under or over GOOD_PHOTO_COUNTS, fewest / most first."""
    counts = Counter(r.person_id for r in faces)
    out: dict[str, list[dict]] = {"under_3": [], "over_5": []}
    for person_id, n in sorted(counts.items(), key=lambda kv: (kv[1], kv[0])):
        if n < GOOD_PHOTO_COUNTS.start:
            out["under_3"].append({"person_id": person_id, "faces": n})
        elif n >= GOOD_PHOTO_COUNTS.stop:
            out["over_5"].append({"person_id": person_id, "faces": n})
    out["over_5"].reverse()  # most first
    return out


def audit(store, appid: str, fingerprint: str, threshold: float) -> dict:
    rows = store.embeddings(appid, fingerprint)
    weak = []
    for face in rows:
        reason = weak_face(store.face(appid, face.face_id))
        if reason:
            weak.append({"person_id": face.person_id, "face_id": face.face_id, "reason": reason})
    return {"persons": len({r.person_id for r in rows}), "faces": len(rows), "threshold": threshold,
            "look_alikes": look_alikes(rows, threshold), "weak_faces": weak, "photo_counts": photo_counts(rows)}


def run(args) -> int:
    from edge.core.settings import ConfigError
    from edge.hub import config
    from edge.hub.store import open_store
    from edge.vision.pipeline import default_models_dir

    try:
        settings = config.load(args.config)
        appids = sorted({c.appid for c in settings.all_credentials()})
    except ConfigError as exc:
        print(f"edge-verifier audit: {exc}", file=sys.stderr)
        return 2
    models = Path(settings.vision.models_dir) if settings.vision.models_dir else default_models_dir()
    try:
        meta = json.loads((models / "models.json").read_text())
        fingerprint = meta["packs"][settings.vision.precision]["embedder_fingerprint"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"edge-verifier audit: no models in {models} ({exc}): run `edge-verifier models build`",
              file=sys.stderr)
        return 1
    threshold = settings.thresholds().accept if args.threshold is None else args.threshold
    # the hub's own store ([storage] url, else path): opening the path alone audited an empty
    # file made on the spot when the hub keeps its persons elsewhere, and reported none
    if not settings.storage.url and not Path(settings.storage.path).is_file():
        print(f"edge-verifier audit: no hub store at {settings.storage.path}", file=sys.stderr)
        return 1
    store = open_store(settings.storage.url, settings.storage.path)
    try:
        report = {"fingerprint": fingerprint,
                  "appids": {a: audit(store, a, fingerprint, threshold) for a in appids}}
    finally:
        store.close()
    print(json.dumps(report))
    return 0
