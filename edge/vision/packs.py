"""The names of the model packs in models/models.json (edge/modelpack/build.py writes them),
and the version of that file's layout.

Kept apart from the pipeline so that settings and command-line parsing can name the packs
without loading ONNX Runtime.
"""

from __future__ import annotations

from typing import Literal

# 2 (models build 8): one "embedder" per pack, each embedder's input mean AND std recorded.
MODELS_FORMAT = 2
PACKS = ("int8", "fp32", "int8-lite", "fp32-lite", "int8-mirror")
Pack = Literal[PACKS]  # for settings: any one of PACKS

# How a pack turns an aligned crop into its embedding (models.json "embedding"; absent: one pass).
# "mirror-mean": the embeddings of the crop and of its horizontal mirror, averaged and
# renormalised (issue 25: members' first tries on small and turned faces, at twice the embedder's
# time). It is part of the pack's fingerprints, so its embeddings never meet one-pass embeddings
# of the same network.
MIRROR_MEAN = "mirror-mean"
EMBEDDINGS = ("single", MIRROR_MEAN)
# The mirror packs and the one-pass pack whose files they run.
MIRROR_PACKS = {"int8-mirror": "int8"}


class ModelPackError(Exception):
    """The models folder holds no usable pack: none built, built in another format, or a file
    missing. The message ends with the fix (`edge-verifier models build`)."""
