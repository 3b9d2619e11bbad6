"""`edge-verifier bench speed`: per-stage latency of the pipeline, int8 against fp32.

Each variant (a model pack, by default `int8` and `fp32`; with `--reference dlib` the dlib
face_recognition pipeline, with `--reference opencv-zoo` OpenCV Zoo's YuNet + SFace) runs in
its own subprocess, one after the other, so that peak RSS and cold start belong to that variant
alone and no two compete for the cores. Every variant sees the same 640x480
door-camera frame with one face. Latencies are medians over `--repeats` runs after warm-up,
on one thread and on all threads; MACs are counted on the ONNX graphs (edge.bench.macs).
The speed goal is a ratio measured in the same run: with `--reference opencv-zoo`, `goals` says
whether the first pack is at least 1.5x faster per face than OpenCV Zoo's pipeline.

The variants take turns for `--rounds` rounds and each figure is the best round's median: on a
shared VM one variant's run can land in a slow spell (the same fp32 detector measured 3.5 and
4.7 ms in two back-to-back runs), and taking turns gives every variant the same chances.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edge.vision.packs import MIRROR_PACKS

FRAME_SIZE = (640, 480)
DEFAULT_PHOTO = "five_celebrity/Ben_Afflek/val_1.jpg"


def add_arguments(parser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--image", help=f"photo with one face (default ../shared/faces/{DEFAULT_PHOTO})")
    parser.add_argument("--repeats", type=int, default=50, help="timed runs per stage (default 50)")
    parser.add_argument("--rounds", type=int, default=3, help="turns each variant takes; best round counts (default 3)")
    parser.add_argument("--models-dir", help="built models (default: models/)")
    parser.add_argument("--packs", default="int8,fp32",
                        help="comma-separated model packs to compare (default int8,fp32; also int8-lite,fp32-lite)")
    parser.add_argument("--reference", type=_references, default=[],
                        help="also run these reference pipelines in the same run: dlib, opencv-zoo or both, "
                        "comma-separated")


def run(args) -> int:
    from edge.dev.localenv import shared_faces_dir

    photo = Path(args.image) if args.image else shared_faces_dir() / DEFAULT_PHOTO
    if not photo.is_file():
        raise SystemExit(f"bench speed: photo {photo} not found (give --image PATH)")
    with tempfile.TemporaryDirectory() as tmp:
        frame_path = Path(tmp) / "frame.png"
        _write_door_frame(photo, frame_path)
        packs = [p.strip() for p in args.packs.split(",") if p.strip()]
        variants = packs + [REFERENCES[name] for name in args.reference]
        if "dlib" in args.reference:
            _ensure_dlib()
        rounds: dict[str, list[dict]] = {name: [] for name in variants}
        n_rounds = max(1, args.rounds)
        for k in range(n_rounds):
            for name in variants:
                _progress(f"bench speed: round {k + 1}/{n_rounds}: {name} ...")
                rounds[name].append(_run_worker(name, frame_path, args))
        results = {name: _best_round(runs) for name, runs in rounds.items()}
        for name in packs:
            results[name].update(_macs(args.models_dir, name))
    report = {
        "machine": _machine(),
        "frame": {"width": FRAME_SIZE[0], "height": FRAME_SIZE[1], "faces": 1, "photo": photo.name},
        "repeats": args.repeats,
    }
    # MACs per face of the first pack: information; the speed goal is a measured ratio (goals)
    report["gmac_per_face"] = results[packs[0]]["gmac_per_face"]
    report.update(results)
    report["ratios"] = _ratios(results, packs)
    report["goals"] = _goals(report["ratios"], packs[0])
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


# reference pipeline -> its key in the report and its worker module. dlib is "reference", the
# key issue 2 names; OpenCV Zoo's pipeline is the one behind the SFace and Pi 4 anchors.
REFERENCES = {"dlib": "reference", "opencv-zoo": "opencv_zoo"}
WORKERS = {"reference": "edge.bench.dlib_reference", "opencv_zoo": "edge.bench.opencv_zoo_reference"}


def _references(value: str) -> list[str]:
    names = [v.strip() for v in value.split(",") if v.strip()]
    unknown = [n for n in names if n not in REFERENCES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown reference {unknown[0]!r} (choose from {', '.join(REFERENCES)})")
    return names


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _write_door_frame(photo: Path, out: Path) -> None:
    """The photo scaled into a 640x480 grey frame, as a door camera would frame a visitor."""
    import cv2
    import numpy as np

    from edge.vision import load_image

    img = load_image(photo)
    w, h = FRAME_SIZE
    scale = min(w / img.shape[1], h / img.shape[0])
    resized = cv2.resize(img, (int(img.shape[1] * scale), int(img.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    frame = np.full((h, w, 3), 110, dtype=np.uint8)
    y, x = (h - resized.shape[0]) // 2, (w - resized.shape[1]) // 2
    frame[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    cv2.imwrite(str(out), frame)


def _run_worker(name: str, frame: Path, args) -> dict:
    """Start the variant's worker; cold start = spawn until its first whole-frame result."""
    module = WORKERS.get(name, "edge.bench.speed_worker")
    cmd = [sys.executable, "-m", module, "--frame", str(frame), "--repeats", str(args.repeats)]
    if name not in WORKERS:
        cmd += ["--precision", name]
    if name != "reference" and args.models_dir:
        cmd += ["--models-dir", args.models_dir]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()  # the worker prints "first" after its first result
    cold_start_ms = (time.monotonic() - start) * 1000
    out, _ = proc.communicate()
    if proc.returncode != 0 or not first.startswith("first"):
        raise SystemExit(f"bench speed: the {name} worker failed (exit {proc.returncode})")
    result = json.loads(out)
    result["cold_start_ms"] = round(cold_start_ms, 1)
    return result


def _best_round(runs: list[dict]) -> dict:
    """Per thread count and stage, the lowest of the rounds' medians; the highest peak RSS."""
    best = dict(runs[0])
    best["threads"] = {
        threads: {stage: min(run["threads"][threads][stage] for run in runs) for stage in stages}
        for threads, stages in runs[0]["threads"].items()
    }
    for stages in best["threads"].values():  # per face = its stages, each at its best, as the worker sums them
        stages["per_face_ms"] = round(sum(v for k, v in stages.items() if k not in ("per_face_ms", "analyze_ms")), 3)
    best["per_face_ms"] = best["threads"]["1"]["per_face_ms"]
    best["cold_start_ms"] = min(run["cold_start_ms"] for run in runs)
    best["peak_rss_mb"] = max(run["peak_rss_mb"] for run in runs)
    best["rounds"] = len(runs)
    return best


def _ensure_dlib() -> None:
    """dlib is a reference for this benchmark only: installed on first use, never a dependency."""
    try:
        import dlib  # noqa: F401
        import face_recognition_models  # noqa: F401
    except ImportError:
        _progress("bench speed: installing the dlib reference (dlib-bin, face-recognition-models) "
                  "for this benchmark ...")
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "dlib-bin", "face-recognition-models"],
            check=True,
        )


def _macs(models_dir: str | None, pack: str) -> dict:
    """MACs per stage for one face, counted on the pack's fp32 graphs (int8 does the same MACs)."""
    from edge.bench.macs import count_macs
    from edge.vision.landmarks import LandmarkNet
    from edge.vision.pipeline import default_models_dir

    root = Path(models_dir) if models_dir else default_models_dir()
    meta = json.loads((root / "models.json").read_text())
    passes = 2 if pack in MIRROR_PACKS else 1  # a mirror pack embeds each crop and its mirror
    float_pack = MIRROR_PACKS.get(pack, pack).replace("int8", "fp32")
    files = meta["packs"].get(float_pack, meta["packs"][pack])["files"]
    gmac = {
        "detect": count_macs(root / files["detector"], meta["models"][files["detector"]]["input"]["shape"]),
        # O-Net runs once plus once per refinement pass for each face
        "landmarks": count_macs(root / files["landmarks"], [1, 48, 48, 3]) * (LandmarkNet.refine_passes + 1),
        "embed": count_macs(root / files["embedder"], [1, 3, 112, 112]) * passes,
    }
    gmac = {k: round(v / 1e9, 4) for k, v in gmac.items()}
    return {"gmac": gmac, "gmac_per_face": round(sum(gmac.values()), 4)}


def _ratios(results: dict, packs: list[str]) -> dict:
    """fp32 over int8 for each int8 pack whose fp32 twin ran, a mirror pack over the pack whose
    files it runs, and each reference over every pack (the goal reads the first pack's)."""
    ratios = {}
    for pack in packs:
        plain = MIRROR_PACKS.get(pack)
        if plain in results:
            a, b = results[plain], results[pack]
            ratios[f"{pack}_over_{plain}_per_face_1thread"] = round(b["per_face_ms"] / a["per_face_ms"], 2)
            ratios[f"{pack}_over_{plain}_embed_1thread"] = round(
                b["threads"]["1"]["embed_ms"] / a["threads"]["1"]["embed_ms"], 2)
        twin = pack.replace("int8", "fp32")
        if "int8" in pack and twin in results:
            a, b = results[pack], results[twin]
            ratios[f"{twin}_over_{pack}_per_face_1thread"] = round(b["per_face_ms"] / a["per_face_ms"], 2)
            ratios[f"{twin}_over_{pack}_embed_1thread"] = round(
                b["threads"]["1"]["embed_ms"] / a["threads"]["1"]["embed_ms"], 2)
    for reference in WORKERS:
        if reference in results:
            for pack in packs:
                ratios[f"{reference}_over_{pack}_per_face"] = round(
                    results[reference]["per_face_ms"] / results[pack]["per_face_ms"], 2)
    return ratios


# Per face, our first pack against OpenCV Zoo's YuNet + SFace in the same run: at least this much
# faster. It stands for "well under the 75 ms per face that pipeline takes on a Pi 4".
MIN_SPEEDUP_OVER_OPENCV_ZOO = 1.5


def _goals(ratios: dict, pack: str) -> dict:
    """Each speed goal whose reference ran: the ratio required, the one measured, and whether met."""
    measured = ratios.get(f"opencv_zoo_over_{pack}_per_face")
    if measured is None:
        return {}
    return {"faster_than_opencv_zoo_per_face": {"at_least": MIN_SPEEDUP_OVER_OPENCV_ZOO, "measured": measured,
                                                "met": measured >= MIN_SPEEDUP_OVER_OPENCV_ZOO}}


def _machine() -> dict:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }
