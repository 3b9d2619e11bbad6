"""Face embeddings from the MobileFaceNet-like 512-d network of the faceplugin npm package.

Input 1x3x112x112 aligned RGB, (x - 127) / 128; output 512 floats, L2-normalised here so that
a dot product is the cosine similarity.
"""

from __future__ import annotations

import numpy as np


class Embedder:
    input_size = 112
    dim = 512

    def __init__(self, session):
        self.session = session
        self._input = session.get_inputs()[0].name

    def infer(self, aligned_bgr: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input: self._preprocess(aligned_bgr)})[0]
        return self._postprocess(out[0])

    @staticmethod
    def _preprocess(aligned_bgr: np.ndarray) -> np.ndarray:
        rgb = aligned_bgr[:, :, ::-1].astype(np.float32)
        return np.ascontiguousarray(((rgb - 127.0) / 128.0).transpose(2, 0, 1)[None])

    @staticmethod
    def _postprocess(vec: np.ndarray) -> np.ndarray:
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        return vec / max(float(np.linalg.norm(vec)), 1e-12)
