"""`edge-verifier models build --check`: is a models folder the documented build?

The documented build is what `models build` makes of models/manifest.toml with the `build`
extra's onnxruntime, with or without ../shared (the int8 calibration photos are manifest files):
the thresholds in edge/matcher.py and the impostor tails in edge/false_admit.py were measured
on its packs, and a hub and its edges share embeddings only when their packs' fingerprints are
equal. A pack's fingerprint covers all its files (detector, landmarks, embedder, liveness).
Every file's sha256 is verified too, so a folder changed after its build is caught.
"""

from __future__ import annotations

import json
from pathlib import Path

from edge.modelpack.fetch import sha256_file
from edge.modelpack.share import pack_fingerprint

# Pack fingerprints of the documented build (models build 9, liveness step 3, onnxruntime
# 1.32.0). Update them together with edge.matcher.CALIBRATED_THRESHOLDS, edge.false_admit's
# tails and the README's figures.
DOCUMENTED_BUILD = 9
DOCUMENTED_LIVENESS_STEP = 3
DOCUMENTED_PACKS = {
    "int8": "443a67aa7576284a",
    "fp32": "f512ee9fea48866f",
    "int8-lite": "1e311bf131e6c11d",
    "fp32-lite": "b4d93dd64d068bac",
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
            got = pack_fingerprint(packs[pack]["files"], sha)
        except KeyError:
            got = None
        if got != expected:
            problems.append(f"pack {pack}: fingerprint {got} is not the documented {expected} (built by models "
                            f"build {built.get('build_version')}, liveness step {liveness_step}, with onnxruntime "
                            f"{built.get('onnxruntime')}; the documented build is {DOCUMENTED_BUILD}, liveness step "
                            f"{DOCUMENTED_LIVENESS_STEP}, with the build extra's onnxruntime)")
    return problems
