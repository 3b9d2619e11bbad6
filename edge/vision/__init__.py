"""Face vision: detection with five landmarks, alignment, embedding, quality gate.

The only part of the code base that knows about ONNX tensors. Public contract used by the
hub, the daemon and the benchmarks:

    pipe = Pipeline.load(models_dir=None, precision="int8", threads=None)
    pipe.fingerprint            # embedder pack fingerprint; never compare across fingerprints
    pipe.fingerprints           # {"detector": ..., "landmarks": ..., "embedder": ...}
    pipe.detect(bgr)            # list[Face], largest first, embedding None
    pipe.embed(bgr, face)       # unit float32 vector, also stored on face.embedding
    pipe.analyze(bgr)           # detect + embed every face
    decode_image(data: bytes)   # BGR uint8 or ApiError(-1300 / -1102 / -1400)
    load_image(path)            # same, from a file
    crop_jpeg(bgr, face.box)    # the face with margin, JPEG bytes (for the hub, events)

Precisions (packs in models/models.json): "int8" (edge default) and "fp32" embed with SFace
(128-d); "int8-lite" / "fp32-lite" with the cheaper 512-d MobileFaceNet-like network;
"int8-mirror" runs int8's files and embeds each crop with its horizontal mirror (mean, renormalised),
under an embedder fingerprint of its own.
Embedding length therefore depends on the pack: never assume one, compare by fingerprint.

Stages for timing: pipe.detector.infer(bgr), pipe.landmarks.infer(bgr, boxes),
pipe.align(bgr, landmarks), pipe.embedder.infer(aligned); each model object has `.session`.
Heavy imports (onnxruntime) happen on first use of Pipeline, not on `import edge.vision`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.vision.crop import crop_jpeg
from edge.vision.face import Face
from edge.vision.image import decode_image, load_image
from edge.vision.quality import Quality

if TYPE_CHECKING:
    from edge.vision.pipeline import Pipeline

__all__ = ["Pipeline", "Face", "Quality", "crop_jpeg", "decode_image", "load_image"]


def __getattr__(name: str):
    if name == "Pipeline":
        from edge.vision.pipeline import Pipeline

        return Pipeline
    raise AttributeError(name)
