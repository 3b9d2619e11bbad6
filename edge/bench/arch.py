"""`edge-verifier bench arch`: does a Raspberry Pi decide like the x86 hub that enrolled its people?

Runs the pipeline on a fixed set of LFW photos (the first `--pairs` same-person and
different-person pairs of pairs.txt) natively, under qemu user-mode emulation of a Pi 4's
`cortex-a72` (Debian's arm64 Python 3.11, the Python of Raspberry Pi OS, with the aarch64 wheels
of the same numpy / OpenCV / ONNX Runtime versions), and, for scale, under emulation of an
AVX2-only x86 (`Haswell`): another x86 machine the hub could run on. For each pack it reports the
cosine between the emulated and the native embedding of each photo, face boxes that moved, and
the decisions (accept / uncertain / reject, the pack's thresholds) that change when the gallery
embedding comes from the native run (the hub) and the probe from the emulated one (the edge),
both ways round. CPU heavy (about 50x slower than native under emulation): run it by hand, once,
not in CI. Needs qemu-user 10 (Debian 12's 7.2 crashes on `import onnxruntime`; bookworm-backports
has 10) and `dpkg --add-architecture arm64 && apt-get update` for the arm64 Python packages.
Everything it fetches goes to --cache (apt-get download, pip install --target).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge.modelpack.qemu import REPO, guest_python

ISSUE_PHOTOS = ["Anibal_Ibarra/Anibal_Ibarra_0002.jpg", "Thaksin_Shinawatra/Thaksin_Shinawatra_0005.jpg"]


def add_arguments(parser) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help="LFW folder with pairs.txt (default ../shared/faces/lfw)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--packs", default="int8,fp32", help="comma-separated packs (default int8,fp32)")
    parser.add_argument("--pairs", type=int, default=50,
                        help="same-person and different-person pairs each (default 50)")
    parser.add_argument("--cpus", default="aarch64:cortex-a72,x86_64:Haswell-noTSX",
                        help="emulated ARCH:CPU list (default aarch64:cortex-a72,x86_64:Haswell-noTSX)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edge-verifier" / "arch",
                        help="arm64 sysroot and aarch64 wheels (default ~/.cache/edge-verifier/arch)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (always JSON)")


def _log(msg: str) -> None:
    print(f"[arch] {msg}", file=sys.stderr, flush=True)


def _run_worker(prefix: list[str], env: dict, models_dir: Path, packs: str, photos: list[Path], out: Path,
                label: str) -> dict[str, np.ndarray]:
    t0 = time.monotonic()
    _log(f"{label}: embedding {len(photos)} photos with {packs}")
    cmd = [*prefix, "-m", "edge.bench.arch_worker", str(models_dir), str(out), packs, *map(str, photos)]
    subprocess.run(cmd, env=env, check=True)
    _log(f"{label}: done in {time.monotonic() - t0:.0f} s")
    with np.load(out) as data:
        return {k: data[k] for k in data.files}


def _decision(score: np.ndarray, accept: float, reject: float) -> np.ndarray:
    return np.where(score >= accept, 2, np.where(score < reject, 0, 1))


def compare(native: dict, other: dict, pack: str, pairs: list[tuple[int, int, bool]]) -> dict:
    """How `other` (an emulated edge) differs from `native` (the hub) on one pack."""
    from edge.core.matcher import CALIBRATED_THRESHOLDS

    t = CALIBRATED_THRESHOLDS[pack]
    a, b = native[f"{pack}/embedding"], other[f"{pack}/embedding"]
    cos = np.sum(a * b, axis=1)
    ok = ~np.isnan(cos)
    moved = np.abs(native[f"{pack}/box"] - other[f"{pack}/box"]).max(axis=1)
    flips, flips_same, flips_diff, into_accept = 0, 0, 0, 0
    n = 0
    drift = []
    for i, j, same in pairs:
        for gallery, probe in ((i, j), (j, i)):  # the hub enrolled one photo, the edge sees the other
            ref = _decision(np.dot(a[gallery], a[probe]), t.accept, t.reject)
            got = _decision(np.dot(a[gallery], b[probe]), t.accept, t.reject)
            if np.isnan(np.dot(a[gallery], b[probe])) or np.isnan(np.dot(a[gallery], a[probe])):
                continue
            n += 1
            drift.append(abs(float(np.dot(a[gallery], b[probe]) - np.dot(a[gallery], a[probe]))))
            if ref != got:
                flips += 1
                flips_same += same
                flips_diff += not same
                into_accept += bool(got == 2 and not same)
    return {
        "photos": int(ok.sum()), "no_face_differs": int((np.isnan(cos) != np.isnan(np.sum(a * a, axis=1))).sum()),
        "cosine_min": round(float(cos[ok].min()), 5), "cosine_p1": round(float(np.percentile(cos[ok], 1)), 5),
        "cosine_mean": round(float(cos[ok].mean()), 5),
        "boxes_moved": int((moved[ok] > 0).sum()), "box_moved_max_px": int(moved[ok].max()),
        "decisions": n, "flips": flips, "flips_same_person": flips_same, "flips_different_person": flips_diff,
        "different_person_into_accept": into_accept,
        "score_drift_max": round(max(drift, default=0.0), 5), "score_drift_median": round(float(np.median(drift)), 5)
        if drift else None,
    }


def near_thresholds(models_dir: Path, data: Path, pack: str, drift: float) -> dict:
    """The share of LFW View-2 pairs (embedded natively, all 6,000) whose score lies within
    `drift` of the pack's accept or reject threshold: the decisions a drift that large could
    move, a bound on the flip rate far tighter than a few dozen decisions give."""
    from edge.bench.lfw import lfw_embeddings, read_pairs
    from edge.core.matcher import CALIBRATED_THRESHOLDS
    from edge.vision import Pipeline

    t = CALIBRATED_THRESHOLDS[pack]
    names, emb, _ = lfw_embeddings(Pipeline.load(models_dir, precision=pack, threads=1), data, workers=2)
    index = {n: i for i, n in enumerate(names)}
    pairs, _ = read_pairs(data / "pairs.txt")
    scores = np.array([np.dot(emb[index[x]], emb[index[y]]) for x, y, _ in pairs])
    scores = scores[~np.isnan(scores)]
    near = (np.abs(scores - t.accept) < drift) | (np.abs(scores - t.reject) < drift)
    return {"lfw_pairs": int(len(scores)), "within_drift_of_a_threshold": int(near.sum()),
            "share": round(float(near.mean()), 5)}


def run(args) -> int:
    from edge.bench.lfw import default_data_dir, read_pairs
    from edge.vision.pipeline import default_models_dir

    data = args.data or default_data_dir()
    models_dir = Path(args.models_dir or default_models_dir()).resolve()
    all_pairs, _ = read_pairs(data / "pairs.txt")
    chosen = [p for p in all_pairs if p[2]][: args.pairs] + [p for p in all_pairs if not p[2]][: args.pairs]
    names = list(dict.fromkeys([n for a, b, _ in chosen for n in (a, b)] + ISSUE_PHOTOS))
    index = {n: i for i, n in enumerate(names)}
    photos = [data / n for n in names]
    pairs = [(index[a], index[b], same) for a, b, same in chosen]
    cache = args.cache
    cache.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
    native = _run_worker([sys.executable], {**env, "PYTHONPATH": str(REPO)}, models_dir, args.packs, photos,
                         cache / "native.npz", "native")
    result = {"photos": len(photos), "pairs": len(pairs), "cpus": {}}
    for spec in args.cpus.split(","):
        arch, cpu = spec.split(":")
        prefix, path = guest_python(spec, cache)
        other = _run_worker(prefix, {**env, "PYTHONPATH": path}, models_dir, args.packs, photos,
                            cache / f"{arch}-{cpu}.npz", f"{arch} {cpu}")
        result["cpus"][spec] = {pack: compare(native, other, pack, pairs) for pack in args.packs.split(",")}
        for pack, row in result["cpus"][spec].items():
            row["lfw_near_threshold"] = near_thresholds(models_dir, data, pack, row["score_drift_max"])
    first = args.packs.split(",")[0]
    boxes = {"native": native[f"{first}/box"]}
    for spec in args.cpus.split(","):
        with np.load(cache / f"{spec.replace(':', '-')}.npz") as other:
            boxes[spec] = other[f"{first}/box"]
    result["issue_photo_boxes"] = {n: {k: [int(v) for v in b[index[n]]] for k, b in boxes.items()}
                                   for n in ISSUE_PHOTOS}
    print(json.dumps(result, indent=2))
    return 0
