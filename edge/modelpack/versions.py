"""What identifies a build: the two steps' versions and the fingerprints of the packs they make.

Its own small module because both steps need it: build.py (the face models) and liveness.py
(the liveness model, which build.py runs after the face models) import it, and neither has to
import the other at module level.
"""

from __future__ import annotations

import hashlib

# Bump when the build's output for the same manifest changes (conversion, quantization,
# calibration), so existing model folders are rebuilt.
BUILD_VERSION = 10  # 4: PRelu rewritten as element-wise ops (edge/modelpack/prelu.py)
# 5: the converted TFLite model's initializers in a fixed order (same bytes on every machine)
# 6: the int8 embedders' PRelu layers run on uint8 codes (edge/modelpack/int8_prelu.py)
# 7: their per-channel slopes as 1x1 depthwise QLinearConvs instead of QLinearMul (same numbers, faster)
# 8: SFace is the embedder of the int8/fp32 packs; the 192-d TFLite MobileFaceNet is gone
# 9: calibrated on the manifest's registry photos on every machine (calibration.py), every face of each photo
# 10: quantized from the committed calibration table (models/calibration.json, table.py), not from a
#     calibration run on the building machine: the same int8 bytes on every CPU
# The liveness step's own version (recorded in its entries): bump when its output changes.
LIVENESS_BUILD_VERSION = 4  # 2: inner channels padded to 16, PRelu as x + Relu((a - 1) * x)
# 3: calibrated on the manifest's registry photos (their best face), like the embedders
# 4: quantized from the committed calibration table, like the embedders


def fingerprint(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


def pack_fingerprint(files: dict[str, str], entries: dict[str, dict], embedding: str | None = None) -> str:
    """A pack's fingerprint from its role -> file map and the files' models.json entries (their
    sha256), and how it embeds when that is not one pass (`embedding`, e.g. "mirror-mean": the
    same files embedding another way are another pack); the same value as
    share.pack_fingerprint, which takes the hashes themselves."""
    return fingerprint(*(f"{r}:{entries[f]['sha256']}" for r, f in sorted(files.items())),
                       *([f"embedding:{embedding}"] if embedding else []))


def embedder_fingerprint(embedder_sha256: str, landmarks_sha256: str, alignment: str,
                         embedding: str | None = None) -> str:
    """What makes an embedding: the embedder, the landmarks that align its input, the alignment,
    and how the crop is embedded when not in one pass. Embeddings of different values never compare."""
    return fingerprint(embedder_sha256, landmarks_sha256, alignment, *([embedding] if embedding else []))
