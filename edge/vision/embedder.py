"""Face embeddings from aligned 112x112 crops.

`Embedder` wraps one embedding network: RGB NCHW input normalised as (x - mean) / std, with the
mean and std recorded per model in models.json. The int8/fp32 packs run SFace (128-d, raw 0-255
input: mean 0, std 1), the -lite packs the MobileFaceNet-like 512-d network of the faceplugin
npm package ((x - 127) / 128).

With `mirror` (the int8-mirror pack) the embedding is the mean of the crop's and of its
horizontal mirror's, renormalised: two runs, as the networks are exported with a batch of one.
"""

from __future__ import annotations

import numpy as np


class Embedder:
    input_size = 112

    def __init__(self, session, mean: float, std: float, mirror: bool = False):
        self.session = session
        self.mean = mean
        self.std = std
        self.mirror = mirror
        self._input = session.get_inputs()[0].name

    @property
    def dim(self) -> int | None:
        """The length of the embeddings it gives (None when the model does not say)."""
        last = self.session.get_outputs()[0].shape[-1]
        return last if isinstance(last, int) else None

    def infer(self, aligned_bgr: np.ndarray) -> np.ndarray:
        vec = self.infer_once(aligned_bgr)
        if not self.mirror:
            return vec
        return self._postprocess(vec + self.infer_once(aligned_bgr[:, ::-1]))

    def infer_once(self, aligned_bgr: np.ndarray) -> np.ndarray:
        """The unit embedding of this crop alone (no mirror), whatever the pack."""
        out = self.session.run(None, {self._input: self._preprocess(aligned_bgr, self.mean, self.std)})[0]
        return self._postprocess(out[0])

    @classmethod
    def input_blob(cls, aligned_bgr: np.ndarray, mean: float, std: float) -> np.ndarray:
        """The network's input for an aligned crop (for the int8 calibration)."""
        return cls._preprocess(aligned_bgr, mean, std)

    @staticmethod
    def _preprocess(aligned_bgr: np.ndarray, mean: float, std: float) -> np.ndarray:
        rgb = aligned_bgr[:, :, ::-1].astype(np.float32)
        return np.ascontiguousarray(((rgb - mean) / std).transpose(2, 0, 1)[None])

    @staticmethod
    def _postprocess(vec: np.ndarray) -> np.ndarray:
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        return vec / max(float(np.linalg.norm(vec)), 1e-12)
