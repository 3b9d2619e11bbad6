"""`edge-verifier bench door --tracks`: how many looks a stranger's approach really gives.

The daemon scores every good frame of a track and publishes the first accept, so a stranger
gets one look per scored frame, and identify's `false_admit_rate` holds per look (issue 25's
per-look limit, docs/daemon.md). `bench door --frames T` measured the harsh case, T different
LFW photos as one approach. This bench measures real ones: continuous recordings of faces
(../shared/faces/liveness: NUAA's live webcam sessions, the live webcam video, `krzysiek`'s live
video, and separately the phone-to-phone replay videos, a face moving through a video), none of
them in LFW, taken as strangers at LFW doors.

- Looks: a track's frames that pass the quality gate, in order, at most `--look-fps` per second
  (a video's frames are taken `fps / look-fps` apart, every phase; NUAA's files are already
  every 5th frame of its webcam). An approach is T consecutive looks of one recording.
- **Per pair** (the curve): each LFW person with at least K photos (K drawn at random), scored as
  the daemon's identify rule scores a person (best face, or the larger of best face and template);
  the share of (approach, person) pairs over a threshold for T looks against one look, and their
  ratio: the number of looks an approach is worth at that threshold (1 when frames are alike, T
  when they are independent); pooled, and per group of recordings (`pairs_by_group`).
- **At the door**: random LFW galleries of N x K, every approach decided with the daemon's own
  code (edge.core.matcher, edge.daemon.decide, edge.daemon.evidence: band margins from each
  frame's condition, the first accept wins), with `[identify] rate_per` look and approach side by
  side; FPIR per T at the shipped rate and at looser rates (more admits to count).
- **Claims** (`claims`): each approach claims each LFW person of K = 3 photos (a stranger with
  their badge), decided look by look at `[verify] rate_per` look's and claim's thresholds
  (edge.bench.door_claims): admitted per claim, pooled and per group.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

T_DEFAULT = "1,2,3,5,10"


def _log(msg: str) -> None:
    print(f"[door tracks] {msg}", file=sys.stderr, flush=True)


def add_arguments(parser) -> None:
    parser.add_argument("--tracks", type=Path, nargs="?", const=Path(), default=None,
                        help="strangers' approaches from continuous recordings (default folder: "
                        "../shared/faces/liveness): looks per approach measured on real frames")
    parser.add_argument("--look-fps", type=float, default=5.0,
                        help="with --tracks: looks a second the daemon scores (a video's frames this far apart)")
    parser.add_argument("--track-looks", default=T_DEFAULT, help="with --tracks: looks per approach T")
    parser.add_argument("--rates", default="0.001,0.01",
                        help="with --tracks: false_admit_rate values decided at the door (the first is shipped)")


@dataclass
class Recording:
    name: str  # nuaa/live/<session>, webcam/real2, <source>/<kind>/<video>
    group: str  # live | replayed video
    fps: float  # frames per second of the rows below (NUAA: its files' rate, unknown: 0)


def _recordings(root: Path) -> Iterator[tuple[Recording, Iterator[np.ndarray]]]:
    import cv2

    from edge.bench.liveness_sources import VIDEO_SUFFIXES, nuaa_order, video_fps, video_frames

    live = sorted((root / "nuaa" / "live").glob("*/*.jpg"), key=nuaa_order)
    sessions: dict[str, list[Path]] = {}
    for path in live:
        sessions.setdefault(path.stem.rsplit("_", 1)[0], []).append(path)
    for session, paths in sessions.items():
        yield Recording(f"nuaa/live/{session}", "live", 0.0), (cv2.imread(str(p)) for p in paths)
    videos = [("webcam/real2", "live", root / "webcam" / "real2.webm")]
    base = root / "sources"
    for path in sorted(base.glob("*/*/*")) if base.is_dir() else []:
        kind = path.parent.name
        if path.suffix.lower() in VIDEO_SUFFIXES and kind in ("live", "replay"):
            videos.append((f"{path.parent.parent.name}/{kind}/{path.stem}",
                           "live" if kind == "live" else "replayed video", path))
    for name, group, path in videos:
        if path.is_file():
            yield Recording(name, group, video_fps(path)), video_frames(path, 1)


@dataclass
class TrackFaces:
    """Per frame with a face: its recording, embedding and what the quality gate measured."""

    recordings: list[Recording]
    rec: np.ndarray  # (n,) index into recordings
    frame: np.ndarray  # (n,) frame number in its recording
    emb: np.ndarray  # (n, d)
    gate_ok: np.ndarray
    size: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    sharpness: np.ndarray


def track_faces(pipe, root: Path, cache: Path | None) -> TrackFaces:
    """Every frame of every recording through the pipeline (the largest face), cached."""
    from edge.bench.wild import embedding_models

    found = list(_recordings(root))
    key = hashlib.sha256("\n".join([repr(embedding_models(pipe)), str(root.resolve()),
                                    *(r.name for r, _ in found)]).encode()).hexdigest()[:16]
    path = cache / f"tracks-{pipe.precision}-{key}.npz" if cache else None
    recordings = [r for r, _ in found]
    fields = ("rec", "frame", "emb", "gate_ok", "size", "yaw", "pitch", "sharpness")
    if path is not None and path.is_file():
        with np.load(path, allow_pickle=False) as z:
            _log(f"{len(z['rec'])} faces of {len(recordings)} recordings from {path}")
            return TrackFaces(recordings, **{f: z[f] for f in fields})  # type: ignore[arg-type]
    rows: list[tuple] = []
    t0 = time.monotonic()
    for i, (rec, frames) in enumerate(found):
        n = 0
        for j, img in enumerate(frames):
            if img is None:
                continue
            faces = pipe.detect(img)
            if faces:
                face = max(faces, key=lambda f: f.box[2] * f.box[3])  # the one walking up
                q = face.quality
                rows.append((i, j, pipe.embedder.infer(face.aligned), q.ok, q.size, q.yaw, q.pitch, q.sharpness))
            n += 1
        _log(f"{rec.name}: {n} frames ({i + 1}/{len(found)} recordings, {time.monotonic() - t0:.0f} s)")
    if not rows:
        raise ValueError(f"no face in any recording under {root}")
    out = TrackFaces(recordings, np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                     np.stack([r[2] for r in rows]).astype(np.float32), np.array([r[3] for r in rows], bool),
                     *(np.array([r[k] for r in rows], np.float32) for k in range(4, 8)))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, **{f: getattr(out, f) for f in fields})
        tmp.replace(path)
    return out


def of_group(tf: TrackFaces, group: str) -> TrackFaces:
    """The frames of the recordings of one group."""
    keep = np.isin(tf.rec, [i for i, r in enumerate(tf.recordings) if r.group == group])
    return TrackFaces(tf.recordings, *(getattr(tf, f)[keep] for f in
                                       ("rec", "frame", "emb", "gate_ok", "size", "yaw", "pitch", "sharpness")))


def approaches(tf: TrackFaces, looks: int, look_fps: float) -> list[tuple[int, np.ndarray]]:
    """(recording, rows) of every approach of `looks` consecutive good looks: in each recording,
    the frames `fps / look_fps` apart (every phase), gated, cut into runs of `looks`."""
    out = []
    for i, rec in enumerate(tf.recordings):
        rows = np.flatnonzero(tf.rec == i)
        step = max(1, round(rec.fps / look_fps)) if rec.fps else 1
        for phase in range(step):
            taken = rows[(tf.frame[rows] % step) == phase]
            good = taken[tf.gate_ok[taken]]
            out += [(i, good[k: k + looks]) for k in range(0, len(good) - looks + 1, looks)]
    return out


def pair_curve(tf: TrackFaces, lfw: np.ndarray, by_person: dict, k: int, looks: list[int], look_fps: float,
               template: bool, rng: np.random.Generator) -> dict:
    """Share of (approach, LFW person) pairs over each threshold, per T, and the looks an
    approach is worth (its share over one look's) at the thresholds one look reaches at FAR
    1e-3, 1e-4, 1e-5 on these pairs."""
    from edge.bench.door_templates import rule_scores

    persons = sorted(p for p, rows in by_person.items() if len(rows) >= k)
    units = np.stack([rng.choice(by_person[p], size=k, replace=False) for p in persons])
    # (frames, persons), each person scored as identify scores them (edge.bench.door_templates)
    scores = rule_scores(tf.emb, lfw, units)["max" if template else "best"]
    grid = np.round(np.arange(0.30, 0.601, 0.005), 3)
    single = scores[np.concatenate([r for _, r in approaches(tf, 1, look_fps)])]
    at = {far: float(np.quantile(single, 1 - far)) for far in (1e-3, 1e-4, 1e-5)}
    out: dict = {"persons": len(persons), "photos": k, "thresholds": {f"{f:g}": round(t, 4) for f, t in at.items()},
                 "grid": grid.tolist(), "per_T": {}}
    for t_looks in looks:
        apps = approaches(tf, t_looks, look_fps)
        if not apps:
            continue
        top = np.stack([scores[r].max(axis=0) for _, r in apps])  # (approaches, persons)
        share = [(top > g).mean() for g in grid]
        worth = {f"{f:g}": round(float((top > t).mean() / max(f, 1e-12)), 2) for f, t in at.items()}
        out["per_T"][str(t_looks)] = {"approaches": len(apps), "pairs": int(top.size),
                                      "share_over": [float(s) for s in share], "looks_worth": worth}
    return out


def claim_check(tf: TrackFaces, lfw: np.ndarray, by_person: dict, pack: str, k: int, looks: list[int],
                look_fps: float, rng: np.random.Generator) -> dict:
    """1:1 claims on real approaches: each approach of T looks claims each LFW person of k photos
    (scored as Decider.verify scores a claim under each rule: the best face per look, per claim
    the larger of that and the template); admitted when a look reaches its threshold, `[verify]
    rate_per` look and claim side by side (edge.bench.door_claims), per group."""
    from edge.bench.door_claims import RULES, admitted, by_template, daemon_thresholds, look_thresholds
    from edge.bench.door_templates import rule_scores
    from edge.daemon.decide import Decider

    persons = sorted(p for p, rows in by_person.items() if len(rows) >= k)
    units = np.stack([rng.choice(by_person[p], size=k, replace=False) for p in persons])
    scores = rule_scores(tf.emb, lfw, units)  # {"best": (frames, persons), "max": with the template}
    thresholds = daemon_thresholds(pack)
    deciders = {r: Decider(None, claim_rate_per=r) for r in RULES}
    out: dict = {"persons": len(persons), "photos": k, "per_T": {}}
    for t_looks in looks:
        apps = approaches(tf, t_looks, look_fps)
        if not apps:
            continue
        rules = {r: look_thresholds(thresholds, deciders[r], k, t_looks) for r in RULES}
        entry: dict = {"approaches": len(apps), "claims": len(apps) * len(persons), "rules": {}}
        groups = np.array([tf.recordings[rec].group for rec, _ in apps])
        for r in RULES:
            scored = scores["max" if by_template(thresholds, deciders[r], k) else "best"]
            looks_of = np.stack([scored[rows] for _, rows in apps]).transpose(0, 2, 1)  # (approaches, persons, T)
            hit = admitted(looks_of.reshape(-1, t_looks), rules[r]).reshape(len(apps), len(persons))
            entry["rules"][r] = {"thresholds": rules[r], "admitted": int(hit.sum()),
                                 "far_per_claim": float(hit.mean()),
                                 "by_group": {g: {"claims": int(hit[groups == g].size),
                                                  "admitted": int(hit[groups == g].sum())}
                                              for g in sorted(set(groups.tolist()))}}
        out["per_T"][str(t_looks)] = entry
        _log(f"claims on real approaches, K={k} T={t_looks}: " + ", ".join(
            f"per {r} {e['admitted']}/{entry['claims']}" for r, e in entry["rules"].items()))
    return out


def door_check(tf: TrackFaces, lfw: np.ndarray, by_person: dict, pack: str, rule: str, n: int, k: int,
               galleries: int, looks: list[int], look_fps: float, rates: list[float], seed: int) -> list[dict]:
    """FPIR per T through the daemon's decision code at LFW doors of n x k."""
    from edge.bench.door import draw_door, identify_looks
    from edge.core.conditions import Condition
    from edge.core.matcher import Enrolled, Gallery, thresholds_for
    from edge.daemon.decide import Decider
    from edge.daemon.evidence import decide_approach

    rng = np.random.default_rng([seed, n, k])
    doors = [draw_door(rng, by_person, n, k)[0] for _ in range(galleries)]
    cond = [Condition(float(tf.size[i]), float(tf.yaw[i]), float(tf.pitch[i]), float(tf.sharpness[i]))
            for i in range(len(tf.rec))]
    results = []
    for rate, rate_per in ((r, p) for r in rates for p in ("look", "approach")):
        thresholds = thresholds_for(pack, false_admit_rate=rate, rule=rule)
        decider = Decider(None, offline="deny", cloud_fallback=False, identify_fallback=False, rate_per=rate_per)
        for t_looks in looks:
            apps = approaches(tf, t_looks, look_fps)
            admitted = 0
            per_group: dict[str, list[int]] = {}
            threshold = None
            for enrolled in doors:
                gallery = Gallery([Enrolled(p, f"{p}#{i}", lfw[r], ("door",)) for p, rs in enrolled.items()
                                   for i, r in enumerate(rs)], thresholds, version="bench")
                threshold = gallery.identify_threshold()
                for rec, rows in apps:
                    scorer = identify_looks(decider, gallery, [cond[int(r)] for r in rows])
                    out = decide_approach(scorer, tf.emb[rows], "best")
                    hit = out is not None and out.decision == "accept"
                    admitted += hit
                    g = per_group.setdefault(tf.recordings[rec].group, [0, 0])
                    g[0] += hit
                    g[1] += 1
            by_group = {name: {"approaches": a, "admitted": h, "fpir": round(h / a, 6)}
                        for name, (h, a) in per_group.items()}
            total = len(apps) * len(doors)
            results.append({"rate": rate, "rate_per": rate_per, "persons": n, "photos_per_person": k, "looks": t_looks,
                            "threshold": threshold, "approaches": total, "admitted": int(admitted),
                            "fpir": round(admitted / max(total, 1), 6), "by_group": by_group})
            _log(f"{pack} {rule} rate {rate:g} per {rate_per} {n}x{k} T={t_looks}: FPIR {admitted}/{total} "
                 f"= {admitted / max(total, 1) * 100:.3f} %")
    return results


def plot(curves: dict, path: Path, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(curves), figsize=(6 * len(curves), 4.5), squeeze=False)
    for ax, (label, c) in zip(axes[0], curves.items()):
        for t_looks, entry in c["per_T"].items():
            share = np.maximum(np.array(entry["share_over"]), 1e-9)
            ax.semilogy(c["grid"], share, label=f"T = {t_looks} looks")
        for t in c["thresholds"].values():
            ax.axvline(t, color="grey", lw=0.5, ls=":")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("threshold (cosine)")
        ax.set_ylabel("share of (approach, person) pairs over it")
        ax.set_ylim(1e-6, 1)
        ax.legend(fontsize=8)
    fig.suptitle(f"strangers' looks per approach, real recordings ({meta['pack']}, {meta['look_fps']:g} looks/s)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    from edge.bench.door import photos_by_person
    from edge.bench.lfw import cache_dir, default_data_dir, lfw_embeddings
    from edge.dev.localenv import shared_faces_dir
    from edge.vision.pipeline import Pipeline

    root = args.tracks if str(args.tracks) not in ("", ".") else shared_faces_dir() / "liveness"
    data = args.data or default_data_dir()
    if not root.is_dir() or not data.is_dir():
        print(f"edge-verifier bench door --tracks: error: {root if not root.is_dir() else data} not found "
              "(pass a folder or set EDGE_VERIFIER_SHARED)", file=sys.stderr)
        return 2
    pack = "int8" if args.precision == "both" else args.precision
    try:
        looks = [int(v) for v in args.track_looks.split(",")]
        rates = [float(v) for v in args.rates.split(",")]
    except ValueError:
        looks, rates = [], []
    if not looks or min(looks) < 1 or not rates or not all(0 < r < 1 for r in rates) or not args.look_fps > 0:
        print("edge-verifier bench door --tracks: error: --track-looks takes whole numbers >= 1, --rates "
              "numbers in (0, 1), --look-fps a number > 0", file=sys.stderr)
        return 2
    pipe = Pipeline.load(args.models_dir, precision=pack, threads=1)
    names, lfw, _ = lfw_embeddings(pipe, data, args.workers or os.cpu_count() or 1)
    by_person = photos_by_person(names)
    try:
        tf = track_faces(pipe, root, cache_dir())
    except ValueError as exc:
        print(f"edge-verifier bench door --tracks: error: {exc}", file=sys.stderr)
        return 2
    result: dict = {"pack": pack, "look_fps": args.look_fps, "lfw": str(data), "recordings": [
        {"name": r.name, "group": r.group, "fps": round(r.fps, 2),
         "faces": int((tf.rec == i).sum()), "good": int(tf.gate_ok[tf.rec == i].sum())}
        for i, r in enumerate(tf.recordings)], "pairs": {}, "pairs_by_group": {}, "door": {}}
    rules = ["best", "best-or-template"] if args.identify_rule == "best" else [args.identify_rule]
    curves = {}
    for rule in rules:
        rng = np.random.default_rng([args.seed, 3])
        curve = pair_curve(tf, lfw, by_person, 3, looks, args.look_fps, rule != "best", rng)
        result["pairs"][rule] = curve
        curves[f"{rule}, K = 3, {curve['persons']} LFW persons"] = curve
        _log(f"{rule}: looks an approach is worth, per T: " + ", ".join(
            f"T={t}: {e['looks_worth']}" for t, e in curve["per_T"].items()))
        # each group of recordings alone (live, replayed videos): the same persons and photos
        result["pairs_by_group"][rule] = {
            group: pair_curve(of_group(tf, group), lfw, by_person, 3, looks, args.look_fps, rule != "best",
                              np.random.default_rng([args.seed, 3]))
            for group in sorted({r.group for r in tf.recordings})}
        result["door"][rule] = [r for n in (int(v) for v in args.persons.split(","))
                                for r in door_check(tf, lfw, by_person, pack, rule, n, 3, args.galleries, looks,
                                                    args.look_fps, rates, args.seed)]
    result["claims"] = claim_check(tf, lfw, by_person, pack, 3, looks, args.look_fps,
                                   np.random.default_rng([args.seed, 3]))
    if args.plot:
        plot(curves, args.plot, result)
        result["plot"] = str(args.plot)
    print(json.dumps(result))
    return 0
