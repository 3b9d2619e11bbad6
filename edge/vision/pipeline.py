"""The whole per-frame pipeline: detect -> landmarks -> align -> quality -> embed, and liveness.

`Pipeline.load` reads models/models.json (written by `edge-verifier models build`), opens one
ONNX Runtime session per model and exposes each stage as an attribute (`detector`,
`landmarks`, `embedder`, `align`, `liveness`) so the speed benchmark can time them one by one.
`liveness` is None for a models folder built before it was added (`models build` adds it).
A Pipeline holds no per-call state: one instance serves several threads.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

from edge.vision import alignment, quality
from edge.vision.detector import FaceDetector
from edge.vision.embedder import Embedder
from edge.vision.face import Face
from edge.vision.landmarks import LandmarkNet
from edge.vision.liveness import Liveness, LivenessNet
from edge.vision.packs import EMBEDDINGS, MIRROR_MEAN, MODELS_FORMAT, PACKS, ModelPackError
from edge.vision.runtime import make_session


def default_models_dir() -> Path:
    env = os.environ.get("EDGE_VERIFIER_MODELS")
    if env:
        return Path(env)
    import edge

    return Path(edge.__file__).resolve().parents[1] / "models"


class Pipeline:
    # O-Net's face probability on the refined box: drops the light detector's false positives
    # (textures, animal faces) at almost no cost, since O-Net runs anyway for the landmarks.
    # Measured (build 6): the detector's boxes on the 39 nonface images score at most 0.046
    # (fp32 or int8 detector); of 1,659 real faces, 1-2 score under 0.5 and at most 1 under 0.3.
    # At 0.5 a clear frontal face (five_celebrity Elton_John/val_1) flipped between 0.58 and 0.47
    # with a 1.5 px change of box; 0.3 keeps a wide margin on both sides.
    landmark_score_threshold = 0.3

    def __init__(self, detector: FaceDetector, landmarks: LandmarkNet, embedder: Embedder,
                 fingerprint: str, fingerprints: dict[str, str], precision: str,
                 liveness: LivenessNet | None = None):
        self.detector = detector
        self.liveness = liveness
        self.landmarks = landmarks
        self.embedder = embedder
        self.align = alignment.align
        self.fingerprint = fingerprint
        self.fingerprints = fingerprints
        self.precision = precision

    @classmethod
    def load(cls, models_dir: Path | str | None = None, precision: str = "int8",
             threads: int | None = None) -> "Pipeline":
        if precision not in PACKS:
            raise ValueError(f"precision must be one of {PACKS}, not {precision!r}")
        models_dir = Path(models_dir) if models_dir else default_models_dir()
        index = models_dir / "models.json"
        if not index.is_file():
            raise ModelPackError(f"no models in {models_dir}: run `edge-verifier models build`")
        meta = json.loads(index.read_text())
        if meta.get("format") != MODELS_FORMAT:
            raise ModelPackError(f"the models in {models_dir} are in format {meta.get('format')}, this code reads "
                                 f"{MODELS_FORMAT}: run `edge-verifier models build`")
        pack = meta["packs"][precision]  # KeyError: callers say which folder lacks the pack
        embedding = pack.get("embedding", "single")
        if embedding not in EMBEDDINGS:  # a pulled index is the hub's word: never guess how to embed
            raise ModelPackError(f"pack {precision!r} in {models_dir} embeds by {embedding!r}, which this code "
                                 f"does not know ({', '.join(EMBEDDINGS)})")
        embedder_input = meta["models"][pack["files"]["embedder"]]["input"]
        sessions, fingerprints = {}, {}
        for role, name in pack["files"].items():
            path = models_dir / name
            if not path.is_file():
                raise ModelPackError(f"model file {path} missing: run `edge-verifier models build`")
            # Read once, checked, and run from those bytes: the file models.json describes or
            # none (a pull cut by a power cut, a file swapped in the folder).
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest != meta["models"][name].get("sha256"):
                raise ModelPackError(f"model file {path} is not the one models.json lists (sha256 {digest[:16]}…): "
                                     "pull the pack again or run `edge-verifier models build`")
            sessions[role], fingerprints[role] = make_session(data, threads), digest[:16]
        return cls(
            FaceDetector(sessions["detector"]),
            LandmarkNet(sessions["landmarks"]),
            Embedder(sessions["embedder"], float(embedder_input["mean"]), float(embedder_input["std"]),
                     mirror=embedding == MIRROR_MEAN),
            fingerprint=pack["embedder_fingerprint"],
            fingerprints=fingerprints,
            precision=precision,
            liveness=LivenessNet(sessions["liveness"]) if "liveness" in sessions else None,
        )

    def detect(self, bgr: np.ndarray, limit: int | None = None) -> list[Face]:
        """Every face in the frame, largest first, with landmarks and quality (no embedding);
        with `limit`, landmarks and quality of the largest boxes only (two spare, which O-Net
        may refuse): a crowd, a poster or a printed shirt in view gave up to 73 faces O-Net's
        three passes each, and the decision for the person at the door waited 3x longer."""
        boxes = self.detector.infer(bgr)
        if len(boxes) == 0:
            return []
        if limit is not None and len(boxes) > limit + 2:
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            boxes = boxes[np.argsort(-areas, kind="stable")[: limit + 2]]
        _, points, scores = self.landmarks.infer(bgr, boxes[:, :4])
        faces = []
        for b, lm, s in zip(boxes, points, scores):
            if s < self.landmark_score_threshold:
                continue
            x1, y1, x2, y2 = (int(round(float(v))) for v in b[:4])
            box = (x1, y1, max(x2 - x1, 1), max(y2 - y1, 1))
            aligned = self.align(bgr, lm)
            faces.append(Face(box, float(b[4]), lm, quality.assess(box, lm, aligned), aligned=aligned))
        faces.sort(key=lambda f: f.box[2] * f.box[3], reverse=True)
        return faces

    def embed(self, bgr: np.ndarray, face: Face) -> np.ndarray:
        """Unit float32 embedding of `face` (also stored on face.embedding)."""
        aligned = face.aligned if face.aligned is not None else self.align(bgr, face.landmarks)
        face.embedding = self.embedder.infer(aligned)
        return face.embedding

    def check_liveness(self, bgr: np.ndarray, face: Face) -> Liveness:
        """The liveness of `face` in this one frame (also stored on face.liveness)."""
        if self.liveness is None:
            raise ModelPackError("no liveness model in this models folder: run `edge-verifier models build`")
        face.liveness = self.liveness.infer(bgr, face.box)
        return face.liveness

    def analyze(self, bgr: np.ndarray, max_faces: int | None = None) -> list[Face]:
        """detect + embed; only the `max_faces` largest faces are embedded and returned."""
        faces = self.detect(bgr)
        if max_faces is not None:
            faces = faces[:max_faces]
        for face in faces:
            self.embed(bgr, face)
        return faces

