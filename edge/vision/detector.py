"""Face boxes from the RFB-320 detector (Ultra-Light-Fast-Generic-Face-Detector, ~0.1 GMAC).

Input 1x3x240x320 RGB, (x - 127) / 128; outputs per-anchor scores and already decoded boxes
in corner form, relative to the input. The frame is letterboxed (aspect kept, padded with the
mean grey) so that faces are not squashed on square or portrait photos.
"""

from __future__ import annotations

import cv2
import numpy as np


class FaceDetector:
    input_size = (320, 240)  # (width, height)
    score_threshold = 0.6
    nms_threshold = 0.4
    top_k = 200

    def __init__(self, session):
        self.session = session
        self._input = session.get_inputs()[0].name

    def infer(self, bgr: np.ndarray) -> np.ndarray:
        """Boxes as an (N, 5) float32 array [x1, y1, x2, y2, score] in frame pixels."""
        blob, scale = self._preprocess(bgr)
        scores, boxes = self.session.run(["scores", "boxes"], {self._input: blob})
        return self._postprocess(scores[0, :, 1], boxes[0], scale, bgr.shape)

    def _preprocess(self, bgr: np.ndarray) -> tuple[np.ndarray, float]:
        w, h = self.input_size
        scale = min(w / bgr.shape[1], h / bgr.shape[0])
        nw, nh = max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        canvas = np.full((h, w, 3), 127, dtype=np.uint8)
        canvas[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=interp)
        # (x - 127) / 128 in RGB, NCHW, in one C++ pass (1/128 is exact, so same as in numpy).
        return cv2.dnn.blobFromImage(canvas, 1 / 128, (w, h), (127, 127, 127), swapRB=True), scale

    def _postprocess(self, scores, boxes, scale, shape) -> np.ndarray:
        keep = scores > self.score_threshold
        if not keep.any():
            return np.zeros((0, 5), dtype=np.float32)
        w, h = self.input_size
        b = boxes[keep] * np.array([w, h, w, h], dtype=np.float32) / scale
        s = scores[keep]
        # Stable: anchors with equal scores keep their anchor order, so NMS keeps the same box on
        # every CPU (numpy's default sort is SIMD-dependent and moved a face box by 5 px on aarch64).
        order = np.argsort(-s, kind="stable")[: self.top_k]
        b, s = b[order], s[order]
        xywh = np.column_stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
        idx = cv2.dnn.NMSBoxes(xywh.tolist(), s.tolist(), self.score_threshold, self.nms_threshold)
        idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        out = np.column_stack([b[idx], s[idx]]).astype(np.float32)
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, shape[1])
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, shape[0])
        return out
