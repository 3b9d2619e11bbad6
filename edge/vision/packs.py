"""The names of the model packs in models/models.json (edge/modelpack/build.py writes them),
and the version of that file's layout.

Kept apart from the pipeline so that settings and command-line parsing can name the packs
without loading ONNX Runtime.
"""

from __future__ import annotations

from typing import Literal

# 2 (models build 8): one "embedder" per pack, each embedder's input mean AND std recorded.
MODELS_FORMAT = 2
PACKS = ("int8", "fp32", "int8-lite", "fp32-lite")
Pack = Literal[PACKS]  # for settings: any one of PACKS


class ModelPackError(Exception):
    """The models folder holds no usable pack: none built, built in another format, or a file
    missing. The message ends with the fix (`edge-verifier models build`)."""
