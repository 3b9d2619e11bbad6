"""The names of the model packs in models/models.json (edge/modelpack/build.py writes them).

Kept apart from the pipeline so that settings and command-line parsing can name the packs
without loading ONNX Runtime.
"""

from __future__ import annotations

from typing import Literal

PACKS = ("int8", "fp32", "int8-lite", "fp32-lite")
Pack = Literal[PACKS]  # for settings: any one of PACKS
