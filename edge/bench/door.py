"""`edge-verifier bench door`: open-set identification at a door, measured like NIST's 1:N tests.

On LFW (../shared/faces/lfw, every photo through the whole pipeline, embeddings cached on disk
by edge.bench.lfw): a gallery enrolls N persons with K photos each (drawn from the identities
that have at least K + 1 photos; several random galleries per N). Mated searches are the
enrolled persons' other photos, non-mated searches every photo of the identities not
enrolled. With `--frames T` an approach is a track of up to T photos of one identity, fed
frame by frame to the daemon's rule (edge.daemon.evidence).

Each approach runs the daemon's own decision code in-process: the matcher's Gallery with the
pack's thresholds and the derived identify threshold (edge.core.false_admit), the Decider with its
margin rule and fallback policy, and, when the fallback asks the hub, the hub's verify
decision (a person's faces scored by edge.core.matcher against the hub's embedding of the same
photos, decided at the pack's verify threshold, as edge.hub.service does).

Reported per pack, per N and K, at the shipped settings: FPIR (non-mated approaches admitted
as anyone), FNIR (mated approaches not admitted as themselves), misidentifications (mated
approaches admitted as someone else), the identify threshold applied, and the FNIR at FPIR
1e-2, 1e-3 and 1e-4 from the rank-1 score sweep (DET, drawn with --plot).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from edge.vision.packs import PACKS

FALLBACKS = ("off", "hub", "hub-fp32")
WITHHELD = ("step_closer", "face_the_camera")


def add_arguments(parser) -> None:
    parser.add_argument("--data", type=Path, default=None,
                        help="identity-labelled folder, one sub-folder per person (default ../shared/faces/lfw; "
                        "e.g. ../shared/faces/cfp)")
    parser.add_argument("--degrade", default=None,
                        help="present probes as a door sees them, drawn per photo: size=LO:HI (face box px), "
                        "blur=LO:HI (sigma px), rotate=LO:HI (degrees); results split by condition band")
    parser.add_argument("--identities", type=int, default=None,
                        help="draw this many persons of the folder at random (a shorter run)")
    parser.add_argument("--bands", action="store_true",
                        help="split results by condition band (implied by --degrade and --identities)")
    parser.add_argument("--conditions", default="shipped",
                        help="band margins and door limits applied: shipped (edge.core.false_admit), none "
                             "(today's single threshold), or a JSON file with {\"margins\": {...}, \"limits\": {...}} "
                             "(e.g. the `fitted` entry of another set's run: cross-set); comma-separated: side by side")
    parser.add_argument("--mirror", action="store_true",
                        help="also measure mirror-averaged embeddings (crop + its horizontal mirror) side by side")
    parser.add_argument("--templates", action="store_true",
                        help="person templates (mean of a person's enrolled embeddings) against the best face, "
                        "each rule on its own impostor tail fitted on one set and applied to the other "
                        "(edge.bench.door_templates)")
    parser.add_argument("--cross", type=Path, default=None,
                        help="with --templates: the other identity-labelled folder (same --degrade): fit on "
                        "each, test on both")
    parser.add_argument("--looks", default="1",
                        help="with --templates: looks per approach T (comma-separated; the looks are different "
                        "photos of one person): the rate spent per look or over the T looks")
    parser.add_argument("--units", type=int, default=8,
                        help="with --templates: enrolment units of K photos drawn per person for the tails")
    parser.add_argument("--shipped-only", action="store_true",
                        help="with --templates: fit nothing, decide only the daemon's own rules (best-shipped, "
                        "max-shipped: the shipped tables) on every set: the check of what ships")
    parser.add_argument("--templates-out", type=Path, default=None, help="with --templates: also write the JSON here")
    parser.add_argument("--pairs", type=int, default=20_000_000,
                        help="at most this many 1:1 probe x photo pairs for the per-band tails")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--precision", choices=["both", *PACKS], default="both",
                        help="both: int8 and fp32 packs (default)")
    parser.add_argument("--persons", default="10,100,400", help="gallery sizes N (comma-separated)")
    parser.add_argument("--photos", default="1,3,5", help="enrolled photos per person K")
    parser.add_argument("--galleries", type=int, default=5, help="random galleries per N and K")
    parser.add_argument("--frames", default="1", help="photos per approach T (comma-separated); "
                        "T > 1 runs only N=100, K=3")
    parser.add_argument("--rule", choices=["best", "fused"], default="best",
                        help="how a track's frames are combined (edge.daemon.evidence)")
    parser.add_argument("--identify-rule", choices=["best", "best-or-template"], default="best",
                        help="[identify] rule the doors decide by (LFW's door; a folder's: --templates "
                        "--shipped-only)")
    parser.add_argument("--rate-per", choices=["approach", "look"], default="approach",
                        help="[identify] rate_per the doors decide by: approach (a track's looks share the "
                        "rate: the first 1/2, ...; the daemon's default) or look")
    parser.add_argument("--fallback", default="off", help=f"hub fallback for an uncertain identify: "
                        f"{', '.join(FALLBACKS)}; several comma-separated are measured side by side")
    parser.add_argument("--false-admit-rate", type=float, default=None,
                        help="per approach (default: the shipped [identify] false_admit_rate); 0: "
                        "the old policy, identify at the fixed 1:1 accept threshold")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--workers", type=int, default=None, help="parallel images when embedding")
    parser.add_argument("--plot", type=Path, default=None, help="write the DET curves here (PNG)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON (always JSON)")


def _log(msg: str) -> None:
    print(f"[door] {msg}", file=sys.stderr, flush=True)


class _Progress:
    def __init__(self, total: int, label: str):
        self.total, self.label, self.done, self.t0, self._last = total, label, 0, time.monotonic(), 0.0

    def step(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= 2 or self.done >= self.total:
            self._last = now
            width = 30
            filled = int(width * self.done / max(self.total, 1))
            print(f"\r[door] {self.label} [{'#' * filled}{'.' * (width - filled)}] "
                  f"{self.done}/{self.total} ({now - self.t0:.0f} s)", end="", file=sys.stderr, flush=True)
            if self.done >= self.total:
                print(file=sys.stderr, flush=True)


def photos_by_person(names: list[str]) -> dict[str, np.ndarray]:
    """Row indexes of each identity's photos (names are person/file; one person filed under
    two names is one identity: edge.bench.lfw.SAME_PERSON)."""
    from edge.bench.lfw import identity

    out: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        out.setdefault(identity(n), []).append(i)
    return {p: np.array(rows) for p, rows in out.items()}


def draw_door(rng: np.random.Generator, by_person: dict[str, np.ndarray], n: int, k: int, frames: int = 1):
    """One random door: (enrolled {person: rows}, mated approaches [(person, rows)],
    non-mated approaches [rows]). Enrolled persons need K photos plus one approach of
    `frames` photos; every other identity's photos are chunked into approaches of up to T."""
    eligible = sorted(p for p, rows in by_person.items() if len(rows) >= k + frames)
    if len(eligible) < n:
        raise ValueError(f"only {len(eligible)} identities have {k + frames} photos, {n} asked")
    chosen = set(rng.choice(eligible, size=n, replace=False).tolist())
    enrolled, mated, non_mated = {}, [], []
    for person, rows in by_person.items():
        rows = rng.permutation(rows)
        if person in chosen:
            enrolled[person] = rows[:k]
            rest = rows[k:]
            mated += [(person, rest[i: i + frames]) for i in range(0, len(rest) - frames + 1, frames)]
        else:
            non_mated += [rows[i: i + frames] for i in range(0, len(rows), frames)]
    return enrolled, mated, non_mated


class InProcessHub:
    """The hub's verify decision on its own embeddings of the same photos (the edge's crop is
    named by the rows of its frames): best face of the person, the pack's verify threshold."""

    def __init__(self, enrolled_faces: dict[str, list], hub_emb: np.ndarray, thresholds):
        from edge.core.matcher import Enrolled, Gallery

        self.emb = hub_emb
        self.thresholds = thresholds
        self.gallery = Gallery([Enrolled(p, f"{p}#{i}", hub_emb[r]) for p, rows in enrolled_faces.items()
                                for i, r in enumerate(rows)], thresholds)
        self.asked = 0

    def verify(self, person_id: str, image: bytes) -> dict:
        from edge.core.matcher import Decision, confidence

        self.asked += 1
        rows = [int(r) for r in image.decode().split(",")]
        v = self.emb[rows].mean(axis=0)  # the hub fuses the frames it is sent
        cand = self.gallery.verify(v, person_id)
        ismatch = self.thresholds.decide(cand.score) is Decision.ACCEPT
        return {"ismatch": ismatch, "confidence": confidence(cand.score, self.thresholds)}


def identify_looks(decider, gallery, conditions: list):
    """The daemon's identify for one approach's frames, which edge.daemon.evidence.decide_approach
    scores in order: each look with its number and its condition (None: not measured)."""
    looks = iter(enumerate(conditions))

    def one(v):
        look, condition = next(looks)
        return decider.identify(gallery, v, ["door"], condition=condition, look=look)
    return one


def run_door(emb: np.ndarray, enrolled: dict[str, np.ndarray], mated, non_mated, thresholds,
             fallback: str, rule: str, hub_emb: np.ndarray | None, progress: _Progress | None = None,
             probe: np.ndarray | None = None, conditions: list | None = None, rate_per: str = "approach") -> dict:
    """Decide every approach of one door with the daemon's code; counts and rank-1 scores.
    With `probe`, approaches are scored on those embeddings (a door's view of the photo) while
    the gallery enrols `emb`; `conditions` (per row) are what the quality gate measured."""
    from edge.core.matcher import Enrolled, Gallery
    from edge.daemon.decide import Decider
    from edge.daemon.evidence import decide_approach

    gallery = Gallery([Enrolled(p, f"{p}#{i}", emb[r], ("door",)) for p, rows in enrolled.items()
                       for i, r in enumerate(rows)], thresholds, version="bench")
    hub = None
    if fallback != "off":
        hub = InProcessHub(enrolled, emb if fallback == "hub" else hub_emb, thresholds)
    decider = Decider(hub, offline="deny", cloud_fallback=hub is not None, identify_fallback=hub is not None,
                      rate_per=rate_per)

    seen = emb if probe is None else probe

    def approach(rows):
        looks = [None if conditions is None else conditions[int(r)] for r in rows]
        out = decide_approach(identify_looks(decider, gallery, looks), seen[rows], rule)
        out = decider.settle(out, lambda: ",".join(str(int(r)) for r in rows).encode())
        if progress:
            progress.step()
        return out

    nm_out = [approach(rows) for rows in non_mated]
    nm_admit = np.array([o.decision == "accept" for o in nm_out], bool)
    nm_withheld = np.array([o.reason in WITHHELD for o in nm_out], bool)
    fp = int(nm_admit.sum())
    fn = mis = 0
    m_ok, m_withheld = [], []
    for person, rows in mated:
        out = approach(rows)
        if out.decision != "accept" or out.person_id != person:
            fn += 1
        if out.decision == "accept" and out.person_id != person:
            mis += 1
        m_ok.append(out.decision == "accept" and out.person_id == person)
        m_withheld.append(out.reason in WITHHELD)
    # Rank-1 scores for the DET sweep, of the approach's fused embedding.
    persons = list(enrolled)
    starts = np.cumsum([0] + [len(enrolled[p]) for p in persons[:-1]])
    gmat = np.stack([emb[r] for p in persons for r in enrolled[p]])  # each person's faces together

    def fused(rows_list):
        v = np.stack([seen[rows].sum(axis=0) for rows in rows_list])
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def per_person_max(v):
        return np.maximum.reduceat(v @ gmat.T, starts, axis=1)

    nm = per_person_max(fused(non_mated)).max(axis=1)
    mm = per_person_max(fused([rows for _, rows in mated]))
    truth = np.array([persons.index(p) for p, _ in mated])
    top = mm.argmax(axis=1)
    mated_score = np.where(top == truth, mm[np.arange(len(mated)), truth], -2.0)  # wrong rank 1: a miss
    return {"non_mated": len(non_mated), "mated": len(mated), "false_admits": int(fp), "misses": fn,
            "misidentified": mis, "threshold": gallery.identify_threshold(), "faces": len(gallery),
            "hub_asked": hub.asked if hub else 0, "_nm": nm, "_mated": mated_score,
            "_nm_admit": nm_admit, "_nm_withheld": nm_withheld, "_m_ok": np.array(m_ok, bool),
            "_m_withheld": np.array(m_withheld, bool)}


def fnir_at_fpir(non_mated_top: np.ndarray, mated_score: np.ndarray, fpir: float) -> float | None:
    """FNIR at the strictest threshold letting at most `fpir` of the non-mated searches through."""
    neg = np.sort(non_mated_top)[::-1]
    allowed = int(math.floor(fpir * len(neg)))
    if allowed < 1 and fpir * len(neg) < 1:
        return None  # not enough non-mated searches to measure this FPIR
    t = float(np.nextafter(neg[allowed], np.float32(np.inf))) if allowed < len(neg) else float(neg[-1])
    return float(np.mean(mated_score < t))


def det_curve(nm: np.ndarray, mated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ts = np.unique(np.quantile(nm, np.linspace(0.9, 1.0, 400)))
    fpir = np.array([np.mean(nm >= t) for t in ts])
    fnir = np.array([np.mean(mated < t) for t in ts])
    return fpir, fnir


def per_band(labels: dict[str, np.ndarray], nm_rows, m_rows, nm_admit, nm_withheld, m_ok, m_withheld) -> dict:
    """FPIR / FNIR per condition band of the approaches' probe photos."""
    from edge.core.conditions import all_bands

    out = {}
    for measure, names in all_bands().items():
        for band in names:
            nsel = labels[measure][nm_rows] == band
            msel = labels[measure][m_rows] == band
            e = {"non_mated": int(nsel.sum()), "false_admits": int(nm_admit[nsel].sum()),
                 "mated": int(msel.sum()), "misses": int((~m_ok[msel]).sum()),
                 "withheld_non_mated": int(nm_withheld[nsel].sum()), "withheld_mated": int(m_withheld[msel].sum())}
            e["fpir"] = round(e["false_admits"] / e["non_mated"], 6) if e["non_mated"] else None
            e["fnir"] = round(e["misses"] / e["mated"], 4) if e["mated"] else None
            out[f"{measure}:{band}"] = e
    return out


def door_margins(labels: dict[str, np.ndarray], nm_rows: np.ndarray, nm_top: np.ndarray, threshold: float,
                  rate: float) -> dict[str, float]:
    """Per band, how far above `threshold` identify's accept must sit for the band's strangers
    (their rank-1 scores `nm_top`) to be admitted at most at `rate`; bands with fewer than
    1 / rate strangers are left out (the rate cannot be read there)."""
    from edge.core.conditions import all_bands

    out = {}
    for measure, names in all_bands().items():
        for band in names:
            top = np.sort(nm_top[labels[measure][nm_rows] == band])[::-1]
            if len(top) * rate < 1:
                continue
            allowed = int(math.floor(rate * len(top)))
            need = float(np.nextafter(np.float32(top[allowed]), np.float32(np.inf))) if allowed < len(top) else -1.0
            out[f"{measure}:{band}"] = max(0.0, math.ceil((need - threshold) * 1e4 - 1e-9) / 1e4)
    return out


def run(args) -> int:
    from edge.bench.bounds import upper95
    from edge.bench.lfw import default_data_dir, lfw_embeddings
    from edge.core.matcher import thresholds_for
    from edge.vision.pipeline import Pipeline

    data = args.data or default_data_dir()
    if not data.is_dir():
        print(f"edge-verifier bench door: error: {data} not found (pass --data or set EDGE_VERIFIER_SHARED)",
              file=sys.stderr)
        return 2
    fallbacks = [f.strip() for f in args.fallback.split(",") if f.strip()]
    if any(f not in FALLBACKS for f in fallbacks):
        print(f"edge-verifier bench door: error: --fallback takes {', '.join(FALLBACKS)}", file=sys.stderr)
        return 2
    workers, packs, rate, sizes, photos = door_options(args)
    frames_list = [int(v) for v in args.frames.split(",")]
    embeddings, face_sets = {}, {}
    for pack in sorted(set(packs) | ({"fp32"} if "hub-fp32" in fallbacks else set())):
        pipe = Pipeline.load(args.models_dir, precision=pack, threads=1)
        names, embeddings[pack], _ = lfw_embeddings(pipe, data, workers, face_sets)
    by_person = photos_by_person(names)
    result: dict = {"data": data.name, "photos": len(names), "identities": len(by_person), "galleries": args.galleries,
                    "false_admit_rate": rate, "rule": args.rule, "identify_rule": args.identify_rule,
                    "rate_per": args.rate_per, "seed": args.seed,
                    "decision_code": "in-process: edge.core.matcher, edge.daemon.decide, edge.daemon.evidence, "
                                    "the hub's verify decision", "results": []}
    configs = []
    for frames in frames_list:
        for n in sizes:
            for k in photos:
                if frames > 1 and (n, k) != (100, 3):
                    continue
                for fallback in fallbacks:
                    configs.append((frames, n, k, fallback))
    curves: dict = {}
    for pack in packs:
        thresholds = thresholds_for(pack, false_admit_rate=rate or None, rule=args.identify_rule)
        for frames, n, k, fallback in configs:
            rng = np.random.default_rng([args.seed, n, k, frames])
            try:
                doors = [draw_door(rng, by_person, n, k, frames) for _ in range(args.galleries)]
            except ValueError as exc:  # LFW has 153 identities with 6 photos: no 400 x 5 door
                result["results"].append({"pack": pack, "persons": n, "photos_per_person": k,
                                          "frames": frames, "fallback": fallback, "skipped": str(exc)})
                continue
            total = sum(len(m) + len(nm) for _, m, nm in doors)
            progress = _Progress(total, f"{pack} N={n} K={k} T={frames} fallback={fallback}")
            runs = [run_door(embeddings[pack], e, m, nm, thresholds, fallback, args.rule,
                             embeddings.get("fp32"), progress, rate_per=args.rate_per) for e, m, nm in doors]
            nm_all = np.concatenate([r["_nm"] for r in runs])
            mated_all = np.concatenate([r["_mated"] for r in runs])
            non_mated, mated = sum(r["non_mated"] for r in runs), sum(r["mated"] for r in runs)
            entry = {
                "pack": pack, "persons": n, "photos_per_person": k, "frames": frames, "fallback": fallback,
                "faces": runs[0]["faces"], "threshold": runs[0]["threshold"],
                "non_mated": non_mated, "mated": mated,
                "false_admits": sum(r["false_admits"] for r in runs),
                "fpir": round(sum(r["false_admits"] for r in runs) / non_mated, 6),
                # how high the rate may be (95 %): 0 of 1,800 is up to 0.205 %, not 0
                "fpir_upper95": round(upper95(sum(r["false_admits"] for r in runs), non_mated) or 0.0, 6),
                "fnir": round(sum(r["misses"] for r in runs) / mated, 4),
                "misidentified": sum(r["misidentified"] for r in runs),
                "hub_asked": sum(r["hub_asked"] for r in runs),
                "fnir_at_fpir": {f"{f:g}": (None if (v := fnir_at_fpir(nm_all, mated_all, f)) is None
                                            else round(v, 4)) for f in (1e-2, 1e-3, 1e-4)},
            }
            result["results"].append(entry)
            _log(f"{pack} N={n} K={k} T={frames} fallback={fallback}: threshold {entry['threshold']}, "
                 f"FPIR {entry['fpir'] * 100:.3f} % ({entry['false_admits']}/{non_mated}, at most "
                 f"{entry['fpir_upper95'] * 100:.3f} %), "
                 f"FNIR {entry['fnir'] * 100:.2f} %, misidentified {entry['misidentified']}")
            if fallback == fallbacks[0] and frames == frames_list[0]:
                curves[(pack, n, k)] = det_curve(nm_all, mated_all)
    if args.plot:
        plot_det(curves, args.plot, result)
        result["plot"] = str(args.plot)
    print(json.dumps(result))
    return 0


def plot_det(curves: dict, path: Path, meta: dict) -> None:
    """FNIR against FPIR (log-log), one curve per pack, N and K."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.bench.det_plot import save_det

    fig, ax = plt.subplots(figsize=(7, 5))
    for (pack, n, k), (fpir, fnir) in sorted(curves.items()):
        keep = fpir > 0
        ax.plot(fpir[keep], np.maximum(fnir[keep], 1e-4), label=f"{pack} N={n} K={k}",
                linestyle="-" if pack == "int8" else "--")
    save_det(fig, ax, path, vline=meta["false_admit_rate"], xlabel="FPIR (strangers admitted)",
             ylabel="FNIR (members not admitted as themselves)",
             title=f"bench door on LFW, {meta['galleries']} galleries per point, rank-1 score sweep",
             legend={"fontsize": 7, "ncol": 2}, dpi=120, title_size=None)


def door_options(args) -> tuple[int, list[str], float, list[int], list[int]]:
    """What both door benches (LFW's and any folder's) read the same way from their options:
    workers, packs, the false-admit rate, gallery sizes and photos per person."""
    from edge.core.false_admit import DEFAULT_FALSE_ADMIT_RATE

    workers = args.workers or os.cpu_count() or 1
    packs = ["int8", "fp32"] if args.precision == "both" else [args.precision]
    rate = DEFAULT_FALSE_ADMIT_RATE if args.false_admit_rate is None else args.false_admit_rate
    return workers, packs, rate, [int(v) for v in args.persons.split(",")], [int(v) for v in args.photos.split(",")]
