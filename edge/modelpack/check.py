"""`edge-verifier models build --check`: is a models folder the documented build?

The documented build is what `models build` makes of models/manifest.toml and the committed
calibration table models/calibration.json with the `build` extra's onnxruntime, on any CPU and
with or without ../shared: the int8 files are quantized from the table's ranges, with no
calibration inference on the building machine, and every other step (conversion, rewrites,
ORT's pre-processing folds, the quantizer's numpy) rounds the same way on every instruction set
(`models build --emulate` checks it under emulation of other CPUs: the same bytes on each). The thresholds in
edge/core/matcher.py and the impostor tails in edge/core/false_admit.py were measured on its packs, and a
hub and its edges share embeddings only when their packs' fingerprints are equal. A pack's
fingerprint covers all its files (detector, landmarks, embedder, liveness). Every file's sha256
is verified too, so a folder changed after its build is caught.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.modelpack.fetch import sha256_file
from edge.modelpack.share import pack_fingerprint

# Pack fingerprints of the documented build (models build 10, liveness step 4, onnxruntime
# 1.32.0, and the calibration table models/calibration.json, measured on an AMD EPYC (Zen 3,
# AVX2) and committed). Every file came out the same bytes natively on that EPYC and under
# `models build --emulate` on x86_64:Haswell-noTSX (AVX2, FMA), x86_64:Nehalem (SSE4.2 only),
# aarch64:cortex-a72 (a Pi 4: NEON) and x86_64:Skylake-Server-noTSX-IBRS (whose AVX-512 qemu's
# TCG does not implement: the guest saw AVX2 at most, so AVX-512 itself is not covered).
# A new table (`models calibrate`) is a new build: update these together with
# edge.core.matcher.CALIBRATED_THRESHOLDS, edge.core.false_admit's tails and the build-dependent
# figures of docs/models.md and docs/benchmarks.md.
# (Build 9 calibrated on the building machine: its int8 packs were 443a67aa7576284a and
# 1e311bf131e6c11d on the Intel Xeon it was documented on, other values on other CPUs.)
DOCUMENTED_BUILD = 10
DOCUMENTED_LIVENESS_STEP = 4
DOCUMENTED_PACKS = {
    "int8": "ab80e1db86242b6c",
    "fp32": "f512ee9fea48866f",
    "int8-lite": "b384307ec711badf",
    "fp32-lite": "b4d93dd64d068bac",
    # The int8 files embedding each crop and its mirror: its fingerprint covers "mirror-mean" too.
    "int8-mirror": "5df4a07ca03d419d",
}


def check(models_dir: Path) -> list[str]:
    """What makes `models_dir` differ from the documented build; empty when it is that build."""
    index = Path(models_dir) / "models.json"
    try:
        meta = json.loads(index.read_text())
        files, packs = meta["models"], meta["packs"]
    except FileNotFoundError:
        return [f"{index} not found: run `edge-verifier models build`"]
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{index} is not a models index: {exc}"]
    problems = []
    for name, info in files.items():
        path = Path(models_dir) / name
        if not path.is_file():
            problems.append(f"{name}: missing")
        elif sha256_file(path) != info.get("sha256"):
            problems.append(f"{name}: sha256 differs from models.json (changed after the build)")
    built = meta.get("built_with", {})
    liveness_step = files.get("liveness.int8.onnx", {}).get("build_version")
    sha = {name: info.get("sha256") for name, info in files.items()}
    for pack, expected in DOCUMENTED_PACKS.items():
        try:  # from the files' hashes, not the index's word for it
            got = pack_fingerprint(packs[pack]["files"], sha, packs[pack].get("embedding"))
        except KeyError:
            got = None
        if got != expected:
            problems.append(f"pack {pack}: fingerprint {got} is not the documented {expected} (built by models "
                            f"build {built.get('build_version')}, liveness step {liveness_step}, with onnxruntime "
                            f"{built.get('onnxruntime')}; the documented build is {DOCUMENTED_BUILD}, liveness step "
                            f"{DOCUMENTED_LIVENESS_STEP}, with the build extra's onnxruntime)")
    return problems
