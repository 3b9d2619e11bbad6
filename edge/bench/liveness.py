"""`edge-verifier bench liveness`: presentation-attack detection measured as ISO/IEC 30107-3 does.

Data: ../shared/faces/liveness (its README): NUAA live and printed-photo frames of nine
subjects, and a webcam pair of videos, a live person and a phone replaying a face. Every frame
goes through the whole pipeline from the raw frame: detection, O-Net landmarks, the largest
face, the liveness gates (a withheld frame counts as neither accepted nor refused and is
reported under `withheld`), the x2.7 crop and the model, fp32 and int8.

Figures, per model:
- `frames`: BPCER (live frames called attacks), APCER per attack type (print, replay: the
  share of attack frames called live), ACER = (max APCER + BPCER) / 2, at the shipped threshold;
- `auc` of live against each attack type; `at_bpcer`: the threshold at BPCER 1, 5 and 10 %
  and each type's APCER there;
- `tracks`: as the daemon decides, the median score of `--window` consecutive frames of one
  sequence (one NUAA session or one video; non-overlapping windows) against the threshold;
- `cues.planarity`: a second, multi-frame cue measured beside the model: how far a homography
  fitted to the five landmarks of a window's first frame misses them on its other frames (a
  flat print or screen moves as a plane, a head does not), in eye distances;
- `speed`: what liveness adds per face on one thread, as the daemon runs it: each call (gate,
  crop, inference) right after the int8 face pipeline (detect, landmarks, quality, embed) ran
  on the same frame, so it finds the caches as the daemon leaves them; fp32 and int8 in turn on
  `--timing-frames` faces spread over the data; medians, and each model's ratio to the face
  pipeline (a ratio carries over to another machine better than milliseconds).
- `loso` (also alone with `--loso-only`): every source of the data (NUAA, the webcam pair and
  each folder of sources/, liveness_sources), each left out of the fitting in turn
  (liveness_loso): per left-out source and pooled, per attack type, per frame and per track, the
  coverage (tight face crops get no verdict from the context model), for the model alone, fused
  with the screen cues (edge.vision.screen_cues), and each cue alone; the track cue of
  edge.vision.track_motion (does the face move with its surroundings?) alone, fused, as a veto,
  and silenced on the probably hand-held sources (`loso.motion`); the shipped threshold on
  every source; the DET figures (`--det-dir`); the fusion fitted on every source for the daemon
  (`--fusion-out`); the cost of the model and every cue beside the face pipeline's.
Detections are cached in ~/.cache/edge-verifier (keyed by the detector and landmark models), and
so are every frame's scores and cues for the leave-one-source-out part.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edge.bench.liveness_sources import nuaa_order, video_frames
from edge.dev.localenv import shared_faces_dir

TYPES = ("print", "replay")
TARGETS = (0.01, 0.05, 0.10)
# The scorer the daemon runs (liveness_loso.SCORERS) and how a track fuses its frames.
DEPLOYED = "net+context"
TRACK_RULE = "mean"


def add_arguments(parser) -> None:
    parser.add_argument("--data", type=Path, default=None, help="default: ../shared/faces/liveness")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--window", type=int, default=5, help="frames fused per track decision (median)")
    parser.add_argument("--threshold", type=float, default=None, help="default: the shipped LivenessNet.threshold")
    parser.add_argument("--plot", type=Path, default=None, help="write the DET plot (PNG) here")
    parser.add_argument("--timing-frames", type=int, default=100, help="faces timed per model (0: no timing)")
    parser.add_argument("--limit", type=int, default=None, help="every Nth frame only (quick runs)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (always JSON)")
    parser.add_argument("--target-bpcer", type=float, default=0.05,
                        help="leave-one-source-out: thresholds keep every training source's BPCER at or under this")
    parser.add_argument("--det-dir", type=Path, default=None,
                        help="leave-one-source-out: write one DET figure per scorer (a panel per left-out source) here")
    parser.add_argument("--fusion-out", type=Path, default=None,
                        help="write the fusion fitted on every source (what the daemon loads) here")
    parser.add_argument("--loso-only", action="store_true",
                        help="skip the pooled NUAA/webcam measurement of both models (leave-one-source-out only)")


def _log(msg: str) -> None:
    print(f"[liveness] {msg}", file=sys.stderr, flush=True)


def iter_frames(root: Path, every: int = 1) -> Iterator[tuple[str, str, np.ndarray]]:
    """(kind, sequence, BGR frame) in sequence order; kind is "live", "print" or "replay"."""
    import cv2

    for kind, folder in (("live", "live"), ("print", "print")):
        paths = sorted((root / "nuaa" / folder).glob("*/*.jpg"), key=nuaa_order)
        for path in paths[::every]:
            session = path.stem.rsplit("_", 1)[0]  # subject_glasses_place_session
            yield kind, f"nuaa/{folder}/{session}", cv2.imread(str(path))
    for kind, name in (("live", "real2"), ("replay", "fake2")):
        for frame in video_frames(root / "webcam" / f"{name}.webm", every):
            yield kind, f"webcam/{name}", frame


def auc(live: np.ndarray, attack: np.ndarray) -> float | None:
    """P(a live frame scores above an attack frame), ties counted half (Mann-Whitney)."""
    if not len(live) or not len(attack):
        return None
    live, attack = np.asarray(live)[:, None], np.asarray(attack)[None, :]
    return round(float((live > attack).mean() + 0.5 * (live == attack).mean()), 4)


def threshold_at_bpcer(live: np.ndarray, target: float) -> float:
    """The highest threshold that refuses at most `target` of the live scores."""
    ordered = np.sort(live)
    return float(ordered[min(int(np.floor(target * len(ordered))), len(ordered) - 1)])


def error_rates(live: np.ndarray, attacks: dict[str, np.ndarray], threshold: float) -> dict:
    bpcer = float((live < threshold).mean()) if len(live) else None
    apcer = {t: round(float((s >= threshold).mean()), 4) if len(s) else None for t, s in attacks.items()}
    worst = max((v for v in apcer.values() if v is not None), default=None)
    acer = round((worst + bpcer) / 2, 4) if worst is not None and bpcer is not None else None
    return {"threshold": round(threshold, 6), "bpcer": None if bpcer is None else round(bpcer, 4),
            "apcer": apcer, "acer": acer,
            "counts": {"live": len(live), **{t: len(s) for t, s in attacks.items()}}}


def planarity(landmarks: list[np.ndarray]) -> float:
    """Largest miss, in eye distances, of homographies from the first frame's five landmarks
    to each later frame's: near 0 for a picture moving as a plane, larger for a turning head."""
    import cv2

    first = np.asarray(landmarks[0], dtype=np.float32)
    eye = max(float(np.linalg.norm(first[1] - first[0])), 1e-6)
    worst = 0.0
    for other in landmarks[1:]:
        other = np.asarray(other, dtype=np.float32)
        h, _ = cv2.findHomography(first, other, 0)
        if h is None:
            continue
        mapped = cv2.perspectiveTransform(first[None], h)[0]
        worst = max(worst, float(np.abs(mapped - other).max()) / eye)
    return worst


def _detections(pipe, root: Path, every: int) -> list[dict]:
    """The largest face of every frame (box, landmarks) or None, cached on disk."""
    key = f"{pipe.fingerprints['detector']}-{pipe.fingerprints['landmarks']}-{every}"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edge-verifier" / f"liveness-{key}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    out = []
    for i, (kind, sequence, frame) in enumerate(iter_frames(root, every)):
        faces = pipe.detect(frame)
        face = faces[0] if faces else None
        out.append({"kind": kind, "sequence": sequence,
                    "box": [int(v) for v in face.box] if face else None,
                    "landmarks": face.landmarks.tolist() if face else None,
                    "shape": list(frame.shape[:2])})
        if (i + 1) % 200 == 0:
            _log(f"detected {i + 1} frames")
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(out))
    return out


def run(args) -> int:
    from edge.vision.liveness import LivenessNet
    from edge.vision.pipeline import Pipeline, default_models_dir
    from edge.vision.runtime import make_session

    root = args.data or shared_faces_dir() / "liveness"
    if not (root / "nuaa").is_dir():
        print(f"edge-verifier bench liveness: error: no liveness data in {root}", file=sys.stderr)
        return 2
    models_dir = args.models_dir or default_models_dir()
    result_loso = _loso(root, models_dir, args)
    if args.loso_only:
        print(json.dumps({"data": str(root), "loso": result_loso, "machine": _machine()}))
        return 0
    pipe = Pipeline.load(models_dir, precision="fp32", threads=1)
    meta = json.loads((models_dir / "models.json").read_text())
    nets = {p: LivenessNet(make_session(models_dir / f"liveness.{p}.onnx", 1)) for p in ("fp32", "int8")}
    threshold = args.threshold if args.threshold is not None else LivenessNet.threshold
    every = args.limit or 1
    detections = _detections(pipe, root, every)

    scores = {p: [] for p in nets}  # per frame: score or None (no face or withheld)
    withheld: dict[str, dict[str, int]] = {}
    to_time = []  # frames kept for the speed measurement
    for i, ((kind, _, frame), det) in enumerate(zip(iter_frames(root, every), detections)):
        reason = "no_face" if det["box"] is None else LivenessNet.gate(frame.shape, det["box"])
        if reason:
            withheld.setdefault(kind, {}).setdefault(reason, 0)
            withheld[kind][reason] += 1
            for p in nets:
                scores[p].append(None)
            continue
        for p, net in nets.items():
            scores[p].append(net.infer(frame, tuple(det["box"])).score)
        if args.timing_frames and i % max(1, len(detections) // args.timing_frames) == 0:
            to_time.append(frame)
        if (i + 1) % 500 == 0:
            _log(f"scored {i + 1}/{len(detections)} frames")

    kinds = [d["kind"] for d in detections]
    result = {
        "data": str(root),
        "frames": {k: kinds.count(k) for k in ("live", *TYPES)},
        "withheld": withheld,
        "threshold": threshold,
        "window": args.window,
        "models": {},
        "machine": _machine(),
        "loso": result_loso,
    }
    curves = {}
    for p in nets:
        live, attacks = _split(kinds, scores[p])
        entry = {"file": f"liveness.{p}.onnx", "fingerprint": meta["models"][f"liveness.{p}.onnx"]["fingerprint"],
                 "auc": {t: auc(live, a) for t, a in attacks.items()},
                 "frames": error_rates(live, attacks, threshold),
                 "at_bpcer": {f"{round(t * 100)}%": error_rates(live, attacks, threshold_at_bpcer(live, t))
                              for t in TARGETS},
                 "tracks": _tracks(detections, scores[p], threshold, args.window)}
        result["models"][p] = entry
        curves[p] = (live, attacks)
        _log(f"{p}: frames BPCER {entry['frames']['bpcer']}, APCER {entry['frames']['apcer']}; "
             f"tracks BPCER {entry['tracks']['bpcer']}, APCER {entry['tracks']['apcer']}; AUC {entry['auc']}")
    if to_time:
        result["speed"] = speed(Pipeline.load(models_dir, precision="int8", threads=1), nets,
                                to_time[: args.timing_frames])
        _log(f"speed: {result['speed']}")
    result["cues"] = {"planarity": _planarity_cue(detections, scores["fp32"], threshold, args.window)}
    if args.plot:
        plot_det(curves, args.plot, threshold)
        result["plot"] = str(args.plot)
    print(json.dumps(result))
    return 0


def _loso(root: Path, models_dir: Path, args) -> dict:
    """The leave-one-source-out figures of every scorer over every source (liveness_loso), the
    DET figures, the fusion fitted on all sources, and the cost of the cues beside the face
    pipeline's."""
    from edge.bench import liveness_loso, liveness_sources
    from edge.vision.pipeline import Pipeline

    records = liveness_sources.features(root, models_dir, args.limit or 1)
    _log(f"leave-one-source-out over {len({r['group'] for r in records})} groups, {len(records)} frames")
    out, curves = liveness_loso.report(records, args.target_bpcer, args.window, log=_log)
    if args.det_dir:
        for name, per_group in curves.items():
            path = args.det_dir / f"liveness-loso-{name.replace('+', '-')}.png"
            liveness_loso.plot_det_per_source(per_group, path, name)
            out.setdefault("plots", []).append(str(path))
    if args.fusion_out:
        fused = liveness_loso.fit_all(records, liveness_loso.SCORERS[DEPLOYED], args.target_bpcer, args.window,
                                      TRACK_RULE)
        args.fusion_out.write_text(json.dumps({**fused, "provenance": _provenance(records, args, models_dir)},
                                              indent=1) + "\n")
        out["fusion_out"] = str(args.fusion_out)
    if args.timing_frames:
        # Faces the network scores (context available), spread over every source, one in `step`.
        scored = [i for i, r in enumerate(records) if r["gate"] is None]
        keep = set(scored[:: max(1, len(scored) // args.timing_frames)])
        # Each with the frame the motion cue compares it with (as `liveness_sources.motion`;
        # the neighbouring file in a folder of evenly spaced frames, for the cost only).
        gaps = liveness_sources.motion_gaps(root, args.limit or 1)
        pairs, recent = [], {}
        for i, (_, _, sequence, f) in enumerate(liveness_sources.iter_source_frames(root, args.limit or 1)):
            held = recent.setdefault(sequence, [])
            held.append(f)
            del held[:-gaps.get(sequence, 1) - 1]
            if i in keep:
                pairs.append((held[0] if len(held) > 1 else None, f))
        out["speed"] = cue_speed(Pipeline.load(models_dir, precision="int8", threads=1), pairs)
        _log(f"speed: {out['speed']}")
    return out


def _provenance(records: list[dict], args, models_dir: Path) -> dict:
    import datetime

    meta = json.loads((models_dir / "models.json").read_text())
    return {"command": "edge-verifier bench liveness --loso-only --fusion-out <file>",
            "date": datetime.date.today().isoformat(), "target_bpcer": args.target_bpcer,
            "data": "../shared/faces/liveness (every source: NUAA, webcam, sources/*)",
            "frames": {k: sum(r["kind"] == k for r in records) for k in ("live", *TYPES)},
            "net": {"file": "liveness.int8.onnx", "fingerprint": meta["models"]["liveness.int8.onnx"]["fingerprint"]}}


def cue_speed(pipe, pairs: list[tuple[np.ndarray | None, np.ndarray]]) -> dict:
    """ms per face of the face pipeline (detect, landmarks, quality, embed), then, on the same
    frame, of the liveness network (gate, crop, inference), of the five cues on its context crop
    (what `[liveness] cues` runs, four of them), of the five on the face box, and of the motion
    cue against the earlier frame of the pair (when there is one): medians, and liveness with
    them as a share of the face pipeline."""
    from edge.vision import screen_cues, track_motion
    from edge.vision.liveness import LivenessNet

    net = pipe.liveness
    ms: dict[str, list[float]] = {"pipeline": [], "net": [], "context cues": [], "face cues": [], "motion": []}
    for earlier, frame in pairs:
        t0 = time.perf_counter()
        faces = pipe.analyze(frame)
        t1 = time.perf_counter()
        if not faces or LivenessNet.gate(frame.shape, faces[0].box):
            continue
        box = faces[0].box
        net.infer(frame, box)
        t2 = time.perf_counter()
        screen_cues.all_cues(LivenessNet.crop(frame, box), (40.0, 40.0, 48.0, 48.0))
        t3 = time.perf_counter()
        screen_cues.all_cues(screen_cues.face_patch(frame, box))
        t4 = time.perf_counter()
        for key, (a, b) in {"pipeline": (t0, t1), "net": (t1, t2), "context cues": (t2, t3),
                            "face cues": (t3, t4)}.items():
            ms[key].append((b - a) * 1000)
        if earlier is not None and earlier.shape == frame.shape:
            t5 = time.perf_counter()
            track_motion.pair_motion(earlier, frame, box)
            ms["motion"].append((time.perf_counter() - t5) * 1000)
    if not ms["pipeline"]:
        return {}
    med = {k: statistics.median(v) if v else 0.0 for k, v in ms.items()}
    face = med["pipeline"]
    return {"threads": 1, "faces": len(ms["pipeline"]), "motion_pairs": len(ms["motion"]),
            "ms": {k: round(v, 2) for k, v in med.items()},
            "x_pipeline": {"net": round(med["net"] / face, 3),
                           "motion": round(med["motion"] / face, 3),
                           "net+context cues": round((med["net"] + med["context cues"]) / face, 3),
                           "net+context cues+motion":
                               round((med["net"] + med["context cues"] + med["motion"]) / face, 3),
                           "net+all cues": round((med["net"] + med["context cues"] + med["face cues"]) / face, 3)}}


def speed(pipe, nets: dict, frames: list) -> dict:
    """ms per face of each liveness model, each call right after the face pipeline on the frame."""
    names = list(nets)
    pipeline_ms, ms = [], {p: [] for p in names}
    for i, frame in enumerate(frames):
        for p in names[i % len(names):] + names[: i % len(names)]:  # who goes first alternates
            start = time.perf_counter()
            faces = pipe.analyze(frame)
            mid = time.perf_counter()
            if not faces:
                break
            nets[p].infer(frame, faces[0].box)
            pipeline_ms.append((mid - start) * 1000)
            ms[p].append((time.perf_counter() - mid) * 1000)
    if not pipeline_ms:
        return {}
    face_ms = statistics.median(pipeline_ms)
    return {"threads": 1, "faces": len(ms[names[0]]), "pipeline_ms": round(face_ms, 2),
            "ms_per_face": {p: round(statistics.median(v), 2) for p, v in ms.items()},
            "x_pipeline": {p: round(statistics.median(v) / face_ms, 3) for p, v in ms.items()}}


def _split(kinds: list[str], scores: list[float | None]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    live = np.array([s for k, s in zip(kinds, scores) if k == "live" and s is not None])
    attacks = {t: np.array([s for k, s in zip(kinds, scores) if k == t and s is not None]) for t in TYPES}
    return live, attacks


def _windows(detections: list[dict], scores: list[float | None], window: int) -> Iterator[tuple[str, list[int]]]:
    """(kind, frame indices) of non-overlapping runs of `window` scored frames of one sequence."""
    run: list[int] = []
    for i, det in enumerate(detections):
        if run and detections[run[0]]["sequence"] != det["sequence"]:
            run = []
        if scores[i] is None:
            continue
        run.append(i)
        if len(run) == window:
            yield det["kind"], run
            run = []


def _tracks(detections: list[dict], scores: list[float | None], threshold: float, window: int) -> dict:
    kinds, fused = [], []
    for kind, idx in _windows(detections, scores, window):
        kinds.append(kind)
        fused.append(float(np.median([scores[i] for i in idx])))
    live, attacks = _split(kinds, fused)
    return {**error_rates(live, attacks, threshold), "auc": {t: auc(live, a) for t, a in attacks.items()}}


def _planarity_cue(detections: list[dict], scores: list[float | None], threshold: float, window: int) -> dict:
    """The cue alone (AUC), and the model's track decision with the cue added as a second
    condition (live only if the landmarks also moved unlike a plane), at the cue threshold that
    refuses 1 % and 5 % of live windows on its own."""
    kinds, cue, model = [], [], []
    for kind, idx in _windows(detections, scores, window):
        kinds.append(kind)
        cue.append(planarity([detections[i]["landmarks"] for i in idx]))
        model.append(float(np.median([scores[i] for i in idx])))
    live_cue, attack_cue = _split(kinds, cue)
    out: dict = {"auc": {t: auc(live_cue, a) for t, a in attack_cue.items()}, "combined": {}}
    for target in (0.01, 0.05):
        cut = threshold_at_bpcer(live_cue, target)
        both = [m if c >= cut else 0.0 for m, c in zip(model, cue)]
        live, attacks = _split(kinds, both)
        out["combined"][f"cue at BPCER {round(target * 100)}%"] = {"cue_threshold": round(cut, 4),
                                                                   **error_rates(live, attacks, threshold)}
    return out


def plot_det(curves: dict, path: Path, threshold: float) -> None:
    """APCER of each attack type against BPCER (log-log), fp32 solid and int8 dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.bench.det_plot import save_det

    fig, ax = plt.subplots(figsize=(7, 5))
    for p, (live, attacks) in curves.items():
        for t, scores in attacks.items():
            grid = np.unique(np.concatenate([live, scores]))
            bpcer = np.array([(live < g).mean() for g in grid])
            apcer = np.array([(scores >= g).mean() for g in grid])
            ax.plot(np.maximum(bpcer, 1e-4), np.maximum(apcer, 1e-4), label=f"{p} {t}",
                    linestyle="-" if p == "fp32" else "--")
        at = (live < threshold).mean()
        ax.axvline(max(at, 1e-4), color="grey", linewidth=0.8)
    save_det(fig, ax, path, xlabel="BPCER (live frames refused)", ylabel="APCER (attack frames accepted)",
             title=f"bench liveness, per frame; grey: the shipped threshold {threshold:g} (fp32, int8)",
             dpi=120, title_size=None)


def _machine() -> dict:
    from edge.bench.speed import _machine as machine

    return machine()
