"""`edge-verifier bench door --claims`: what a 1:1 claim (a badge, then a face) really admits.

A claim was scored on the best of the claimed person's K enrolled faces, and every frame the
camera scores before the claim settles is one more look. At the pack's accept threshold (FAR
1e-4 per pair of photos) a stranger holding a member's badge therefore had about K times that
chance on one look, and more over several. `[verify] rate_per = "claim"` holds the accept's FAR
per claim instead (edge.core.false_admit.claim_accept, and under the shipped `best-or-template`
a person of 2 to 5 photos scored by best face or template at their own tail,
claim_template_accept). This bench measures both side by side, with the daemon's default
thresholds (daemon_thresholds).

- Every identity with K photos with a face and T more the door decides on enrols K (drawn at
  random); its other photos, in runs of T, are its own claims (genuine). Every identity's photos,
  in runs of T, are claims against every other enrolled person (impostor): each run is one
  stranger's T looks, different photos (the harsh case: a real approach's frames are somewhat
  alike, `bench door --tracks`).
- A claim is admitted when any of its looks reaches that look's threshold, as the daemon's
  settle window publishes the first local accept (the hub's answer is held to the same threshold,
  edge.daemon.decide). Thresholds per look come from the daemon's own code (Thresholds.claim_accept
  and claim_template_accept, Decider.claim_share). Photos are taken as they are (no condition
  band), or with --bands / --degrade as the door sees them (edge.bench.wild.folder_faces: enrolled
  clean, probes through the quality gate, each look's threshold raised by its condition's margin
  as Decider.verify raises it), with FAR per band for T = 1.
- Reported per K and T, for `look` and `claim`: impostor claims and how many were admitted (FAR
  per claim; and on their first look alone, which shows how heavy the tail of the strangers with
  T photos or more is: for T > 1 they are not the whole set), genuine claims (every run of T of a
  member's photos not enrolled) admitted, admitted on their first look, and rejected (best look
  under the reject threshold), the threshold of each look; and the curve: per-claim FAR against
  FRR of the claim's best look over one threshold, with both rules' operating points.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

RULES = ("look", "claim")


def _log(msg: str) -> None:
    print(f"[door claims] {msg}", file=sys.stderr, flush=True)


def add_arguments(parser) -> None:
    parser.add_argument("--claims", action="store_true",
                        help="1:1 claims (a badge, then a face): FAR per claim and genuine accepts, [verify] "
                        "rate_per look and claim side by side (edge.bench.door_claims); --photos K, --frames T; "
                        "with --degrade or --bands, probes as a door sees them, the shipped condition margins, "
                        "FAR per band")


def daemon_thresholds(pack: str):
    """The thresholds a daemon with the default settings decides by ([identify] rule auto)."""
    from edge.core.false_admit import DEFAULT_FALSE_ADMIT_RATE, TEMPLATE_RULE, template_photos
    from edge.core.matcher import thresholds_for

    return thresholds_for(pack, false_admit_rate=DEFAULT_FALSE_ADMIT_RATE,
                          rule=TEMPLATE_RULE if template_photos(pack) else "best")


def by_template(thresholds, decider, faces: int) -> bool:
    """Whether Decider.verify scores a claim of a person of `faces` faces by best face or template."""
    return decider.claim_rate_per == "claim" and 2 <= faces <= thresholds.template_photos


def look_thresholds(thresholds, decider, faces: int, looks: int) -> list[float]:
    """The accept threshold of each of a claim's `looks` looks for a person of `faces` faces,
    as Decider.verify computes it (no condition margin)."""
    if decider.claim_rate_per == "look":
        return [thresholds.accept] * looks
    accept = thresholds.claim_template_accept if by_template(thresholds, decider, faces) else thresholds.claim_accept
    return [round(min(accept(faces, decider.claim_share(n)), 1.0), 4) for n in range(looks)]


def admitted(scores: np.ndarray, per_look: list[float], margins: np.ndarray | None = None) -> np.ndarray:
    """Claims (rows) whose looks (columns, in order) reach any look's threshold, each look's
    raised by its face's condition margin (`margins`, the shape of `scores`) where given."""
    thresholds = np.asarray(per_look, np.float32)[: scores.shape[1]]
    return (scores >= (thresholds if margins is None else thresholds + margins)).any(axis=1)


@dataclass
class ClaimFaces:
    """Per photo: the embedding a hub enrols, the one the door sees, and what the door makes of
    it (as taken, both are the photo's own; with --degrade the probe is the degraded photo)."""

    enrol: np.ndarray  # (n, d); zeros where no face was found
    probe: np.ndarray  # (n, d)
    usable: np.ndarray  # (n,) bool: the door decides on this probe (a face, past the quality gate)
    judged: list | None = None  # per photo the door's Judgement of its condition (None: no bands)
    bands: dict[str, np.ndarray] | None = None  # {measure: band label per photo}, with --degrade

    @classmethod
    def as_taken(cls, emb: np.ndarray) -> "ClaimFaces":
        return cls(emb, emb, np.linalg.norm(emb, axis=1) > 0)

    def margins(self, thresholds, photos: int, template: bool) -> np.ndarray:
        """(n,) cosine each probe's condition adds to a claim's threshold, as Decider.verify adds
        it: its band's margin, or under the template rule the larger of that and the rule's own
        margin for `photos` photos (0 without bands)."""
        if self.judged is None:
            return np.zeros(len(self.enrol), np.float32)
        return np.array([(thresholds.raised_for_person(j, photos) if template else j).margin
                         for j in self.judged], np.float32)


def _claims(faces: ClaimFaces, person: np.ndarray, k: int, t: int, seed: int):
    """(enrolled rows [P, K], genuine runs [G, T] with the enrolled person of each [G], impostor
    runs [M, T], each run's identity index, the identity index of each enrolled person). Enrolled
    photos need a face; the looks of a claim are probes the door decides on."""
    rng = np.random.default_rng([seed, k, t])
    ids = {p: i for i, p in enumerate(sorted(set(person.tolist())))}
    rows_of: dict[int, list[int]] = {}
    for r in np.flatnonzero(np.linalg.norm(faces.enrol, axis=1) > 0):
        rows_of.setdefault(ids[str(person[r])], []).append(int(r))
    enrolled, genuine, genuine_of, owners, runs, run_owner = [], [], [], [], [], []
    for pid in sorted(rows_of):
        rows = rng.permutation(rows_of[pid])
        seen = rows[faces.usable[rows]]
        rest = rows[k:][faces.usable[rows[k:]]]
        if len(rows) >= k and len(rest) >= t:
            genuine += [rest[i: i + t] for i in range(0, len(rest) - t + 1, t)]  # every run of T left
            genuine_of += [len(enrolled)] * (len(rest) // t)
            enrolled.append(rows[:k])
            owners.append(pid)
        for i in range(0, len(seen) - t + 1, t):  # a stranger's photos as runs of T looks
            runs.append(seen[i: i + t])
            run_owner.append(pid)
    if not enrolled:
        raise ValueError(f"no identity has {k} photos with a face and {t} more the door decides on")
    return (np.array(enrolled), np.array(genuine), np.array(genuine_of), np.array(runs), np.array(run_owner),
            np.array(owners))


def measure(faces: ClaimFaces, person: np.ndarray, pack: str, k: int, t: int, seed: int,
            block: int = 512) -> dict:
    """One K x T point: both rules on the same claims (see the module docstring); with band
    labels and T = 1, also per condition band of the probe."""
    from edge.daemon.decide import Decider

    thresholds = daemon_thresholds(pack)
    enrolled, genuine, genuine_of, runs, run_owner, owners = _claims(faces, person, k, t, seed)
    p = len(enrolled)
    gallery = faces.enrol[enrolled.reshape(-1)]  # person-major: person i's faces at i*K ... i*K+K-1
    deciders = {r: Decider(None, claim_rate_per=r) for r in RULES}
    rules = {r: look_thresholds(thresholds, deciders[r], k, t) for r in RULES}
    template = {r: by_template(thresholds, deciders[r], k) for r in RULES}
    row_margin = {r: faces.margins(thresholds, k, template[r]) for r in RULES}
    templates = faces.enrol[enrolled].sum(axis=1)
    templates /= np.maximum(np.linalg.norm(templates, axis=1, keepdims=True), 1e-12)
    fa, fa_first = dict.fromkeys(RULES, 0), dict.fromkeys(RULES, 0)
    by_band = faces.bands is not None and t == 1
    band_counts: dict[tuple[str, str], dict[str, int]] = {}
    impostor_best = []  # each impostor claim's best look, for the curve
    claims = 0
    for start in range(0, len(runs), block):
        chunk = runs[start: start + block]
        probes = faces.probe[chunk.reshape(-1)]
        best = (probes @ gallery.T).reshape(len(chunk), t, p, k).max(axis=3)  # [runs, T, P]
        other = run_owner[start: start + block, None] != owners[None, :]  # a stranger's claims only
        hits, looks = {}, {}
        for r in RULES:
            scored = np.maximum(best, (probes @ templates.T).reshape(len(chunk), t, p)) if template[r] else best
            looks[r] = scored.transpose(0, 2, 1)[other]  # [claims, T]
            margins = np.broadcast_to(row_margin[r][chunk][:, None, :], (len(chunk), p, t))[other]
            hits[r] = admitted(looks[r], rules[r], margins)
            fa[r] += int(hits[r].sum())
            fa_first[r] += int((looks[r][:, 0] >= rules[r][0] + margins[:, 0]).sum())
        claims += len(looks["claim"])
        if by_band:
            assert faces.bands is not None
            row = np.broadcast_to(chunk[:, None, 0], (len(chunk), p))[other]  # each claim's probe
            for measure_, labels in faces.bands.items():
                of_claim = labels[row]
                for band in np.unique(of_claim):
                    sel = of_claim == band
                    counts = band_counts.setdefault((measure_, str(band)), {"claims": 0, **dict.fromkeys(RULES, 0)})
                    counts["claims"] += int(sel.sum())
                    for r in RULES:
                        counts[r] += int(hits[r][sel].sum())
        impostor_best.append(looks["claim"].max(axis=1))  # the shipped rule's
    if not claims:
        raise ValueError(f"no stranger has {t} photos the door decides on to claim someone else with")
    own_best = np.einsum("gtd,gkd->gtk", faces.probe[genuine], faces.enrol[enrolled[genuine_of]]).max(axis=2)
    own_template = np.einsum("gtd,gd->gt", faces.probe[genuine], templates[genuine_of])
    out: dict = {"photos_per_person": k, "looks": t, "persons": p, "impostor_claims": claims,
                 "genuine_claims": len(genuine), "rules": {}}
    own_of = {}
    for r in RULES:
        own = own_of[r] = np.maximum(own_best, own_template) if template[r] else own_best  # [G, T]
        own_margin = row_margin[r][genuine]
        ok = admitted(own, rules[r], own_margin)
        out["rules"][r] = {"thresholds": rules[r], "scored_by": "best-or-template" if template[r] else "best",
                           "false_accepts": fa[r], "far_per_claim": fa[r] / claims,
                           # the same claims' first looks alone: how heavy these strangers' tail
                           # is (identities with T photos or more are not LFW as a whole)
                           "far_first_look": fa_first[r] / claims,
                           "genuine_accept": round(float(ok.mean()), 4),
                           "genuine_accept_first_look": round(float(
                               (own[:, 0] >= rules[r][0] + own_margin[:, 0]).mean()), 4),
                           "genuine_reject": round(float((own_best.max(axis=1) < thresholds.reject).mean()), 4)}
    if by_band:
        out["bands"] = {f"{m}:{b}": {"claims": c["claims"], **{r: {"false_accepts": c[r],
                                                                    "far_per_claim": c[r] / c["claims"]}
                                                                for r in RULES}}
                        for (m, b), c in sorted(band_counts.items())}
    out["_curve"] = (np.concatenate(impostor_best), own_of["claim"].max(axis=1))  # the shipped rule's
    return out


def run(args, data: Path) -> int:
    from edge.bench.door import door_options
    from edge.bench.lfw import labelled_photos
    from edge.bench.wild import Degrade
    from edge.vision.pipeline import Pipeline

    if not data.is_dir():
        print(f"edge-verifier bench door: error: {data} not found (pass --data or set EDGE_VERIFIER_SHARED)",
              file=sys.stderr)
        return 2
    try:
        workers, packs, _, _, photos = door_options(args)
        looks = [int(v) for v in args.frames.split(",")]
        if min(photos) < 1 or min(looks) < 1:
            raise ValueError("--photos and --frames count from 1")
        degrade = Degrade.parse(args.degrade)
    except ValueError as exc:
        print(f"edge-verifier bench door: error: {exc}", file=sys.stderr)
        return 2
    names, person = labelled_photos(data, args.identities, args.seed)
    by_band = bool(degrade or args.bands)
    result: dict = {"data": str(data), "photos": len(names), "identities": len(set(person.tolist())),
                    "degrade": degrade.label() if degrade else None, "bands": by_band,
                    "seed": args.seed, "looks_are": "different photos of one identity",
                    "decision_code": "in-process: Thresholds.claim_accept, Decider.claim_share", "packs": {}}
    curves = {}
    for pack in packs:
        pipe = Pipeline.load(args.models_dir, precision=pack, threads=1)
        faces = _faces(pipe, data, names, degrade, by_band, workers, args.seed)
        points = []
        for k in photos:
            for t in looks:
                try:
                    point = measure(faces, person, pack, k, t, args.seed)
                except ValueError as exc:
                    points.append({"photos_per_person": k, "looks": t, "skipped": str(exc)})
                    continue
                curves[(pack, k, t)] = (point.pop("_curve"), point)
                points.append(point)
                look, claim = point["rules"]["look"], point["rules"]["claim"]
                _log(f"{pack} K={k} T={t}: {point['impostor_claims']} stranger claims, FAR per claim "
                     f"{look['far_per_claim']:.2e} per look -> {claim['far_per_claim']:.2e} per claim; members "
                     f"admitted {look['genuine_accept'] * 100:.2f} -> {claim['genuine_accept'] * 100:.2f} % "
                     f"(first look {look['genuine_accept_first_look'] * 100:.2f} -> "
                     f"{claim['genuine_accept_first_look'] * 100:.2f} %)")
        result["packs"][pack] = points
    if args.plot:
        result["plots"] = plot_claims(curves, args.plot, result)
    print(json.dumps(result))
    return 0


def _faces(pipe, data: Path, names: list[str], degrade, by_band: bool, workers: int, seed: int) -> ClaimFaces:
    """The photos as taken (lfw_embeddings), or with bands: enrolled clean and seen as the door
    sees them (edge.bench.wild.folder_faces, degraded with --degrade), each probe's condition
    margin and limits as the daemon applies them (the pack's shipped tables)."""
    from edge.bench.lfw import cache_dir, lfw_embeddings
    from edge.bench.wild import folder_faces

    if not by_band:
        return ClaimFaces.as_taken(lfw_embeddings(pipe, data, workers, names=names)[1])
    ff = folder_faces(pipe, data, names, degrade, seed, workers, cache_dir())
    judged = [daemon_thresholds(pipe.precision).judge(ff.condition(i)) for i in range(len(names))]
    decided = np.array([j.withhold is None for j in judged])
    return ClaimFaces(ff.clean, ff.probe, ff.usable & decided, judged, ff.band_labels())


def plot_claims(curves: dict, path: Path, meta: dict) -> list[str]:
    """Per pack: FRR against per-claim FAR (log-log) of the claim's best look, a curve per K x T,
    each rule's operating point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edge.bench.det_plot import save_det

    written = []
    for pack in sorted({key[0] for key in curves}):
        fig, ax = plt.subplots(figsize=(7, 5))
        for (pk, k, t), ((imp, gen), point) in sorted(curves.items()):
            if pk != pack:
                continue
            grid = np.linspace(0.3, 0.7, 401)
            imp_s, gen_s = np.sort(imp), np.sort(gen)
            far = 1 - np.searchsorted(imp_s, grid, side="left") / imp_s.size
            frr = np.searchsorted(gen_s, grid, side="left") / gen_s.size
            keep = far > 0
            line, = ax.plot(far[keep], np.maximum(frr[keep], 1e-3), label=f"K={k} T={t}")
            for rule, marker in (("look", "o"), ("claim", "s")):
                r = point["rules"][rule]
                ax.plot(max(r["far_per_claim"], 1e-8), max(1 - r["genuine_accept"], 1e-3), marker,
                        color=line.get_color(), markersize=6, fillstyle="none" if rule == "look" else "full")
        written.append(save_det(
            fig, ax, path.with_name(f"{path.stem}-{pack}.png"), vline=1e-4,
            xlabel="FAR per claim (strangers with a member's badge admitted)",
            ylabel="FRR per claim (members not admitted)",
            title=f"bench door --claims {Path(meta['data']).name}: {pack} (o per look, ■ per claim)"))
    return written
