"""The part of `bench arch` that runs on the emulated CPU: embed photos, save what came out.

    python -m edge.bench.arch_worker MODELS_DIR OUT.npz PACK[,PACK] PHOTO...

Imports only numpy, OpenCV, ONNX Runtime and edge.vision, so a bare interpreter with those
three wheels runs it (the aarch64 Python under qemu has nothing else).
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> int:
    from edge.vision import Pipeline, load_image

    models_dir, out, packs, photos = argv[0], argv[1], argv[2].split(","), argv[3:]
    result: dict[str, np.ndarray] = {}
    for pack in packs:
        pipe = Pipeline.load(models_dir, precision=pack, threads=1)
        dim = pipe.embedder.session.get_outputs()[0].shape[-1]
        emb, boxes = [], []
        for i, path in enumerate(photos):
            faces = pipe.analyze(load_image(path), max_faces=1)
            emb.append(faces[0].embedding if faces else np.full(dim, np.nan, np.float32))
            boxes.append(faces[0].box if faces else (-1, -1, -1, -1))
            if (i + 1) % 20 == 0:
                print(f"[arch worker] {pack}: {i + 1}/{len(photos)}", file=sys.stderr, flush=True)
        result[f"{pack}/embedding"] = np.asarray(emb, np.float32)
        result[f"{pack}/box"] = np.asarray(boxes, np.int64)
    np.savez(out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
