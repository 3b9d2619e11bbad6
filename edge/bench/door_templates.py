"""`bench door --templates`: person templates and multi-look tracks, each rule on its own tail (issue 25).

Rules scoring a probe against one enrolled person (K photos):

- `best`: the best of the person's K faces (today's rule: edge.core.matcher.Gallery.identify);
- `template`: the probe against the renormalised mean of the person's K enrolled embeddings;
- `max`: the larger of the two.

A score on a new scale needs its own threshold, so every rule is fitted the same way on a
fitting set (`fit_rule`): its **impostor tail per enrolled person** (a decided probe of one person
against an enrolment unit of K clean photos of another, several units drawn per person), from
which the accept threshold for N persons is read at the per-person FAR that keeps the whole
search at the false-admit rate (edge.core.false_admit.per_pair_far with N trials: each person is
one trial whatever the rule), and its **band margins**, as the shipped ones were made: per
condition band, the larger of the band's tail over the set's own at FAR 1e-4 and 1e-5 and
identify's own excess (the band's strangers' rank-1 scores at the doors of one look at each N,
edge.bench.door.door_margins). `best` fitted this way differs from the shipped rule only in the
fit; the shipped thresholds (LFW's tail per face with N x K trials, BAND_MARGINS) are decided
beside it as `best-shipped`.

Each rule fitted on one set is applied to the other (`--cross DIR`, the same `--degrade`) and
to itself (in-sample), on the same galleries and probes as `bench door --data ... --degrade`
(the same seeds): FPIR, FNIR, misidentified, per condition band. The decision is the daemon's
identify rule written with matrices: rank-1 person over the threshold plus the face's band
margin, and ahead of the second person by the Thresholds' margin (tests check it against
edge.daemon's own code for `best-shipped`).

Looks (`--looks 1,2,3`): an approach of T looks decided look by look, the first accept
published (the daemon's `best` track rule). `per-look` spends the whole rate on every look
(today); `spent` decides each look at the per-look rate 1 - (1 - rate)^(1/T) (a track capped at
T looks). The looks of an approach are T different photos of one person, each degraded on its
own: more independent than the frames of one track (the harsh case for strangers, the
generous one for members); degraded copies of one photo are never used as several looks. The
other bound, T frames all alike, is one look decided at the spent threshold (`spent/T` at T = 1):
what spending over T looks costs a member whose frames add nothing. With `--rate-per approach`
(the daemon's default) each single look is also decided as the daemon decides a track's first
look (`first-look`: at the share edge.core.false_admit.look_share(0) of the rate).
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge.core.conditions import all_bands, judge

if TYPE_CHECKING:
    from edge.bench.wild import FolderFaces

RULES = ("best", "template", "max")
# the daemon's own rules, decided beside the fitted ones (policies)
SHIPPED_FITS = {"best-shipped": "shipped (LFW tail per face)",
                "max-shipped": "shipped (TEMPLATE_TAILS per person)"}
SPENDS = ("per-look", "spent")
FIRST_LOOK = "first-look"  # one look at the share the daemon's first look spends (rate_per approach)
APPROACH = "approach"  # T looks, each at the daemon's share of the rate (rate_per approach)
TAIL_FARS = (1e-2, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5, 3e-6, 1e-6, 3e-7)
MARGIN_FARS = (1e-4, 1e-5)


def _log(msg: str) -> None:
    print(f"[door templates] {msg}", file=sys.stderr, flush=True)


# --- scores ---------------------------------------------------------------------------------

def templates(clean: np.ndarray, units: np.ndarray) -> np.ndarray:
    """(m, d): the renormalised mean of each unit's clean embeddings (`units`: (m, K) rows)."""
    t = clean[units].sum(axis=1)
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)


def rule_scores(probe: np.ndarray, clean: np.ndarray, units: np.ndarray) -> dict[str, np.ndarray]:
    """{rule: (p, m)}: each probe row against each enrolment unit (K rows of `clean`)."""
    faces = probe @ clean[units.reshape(-1)].T  # (p, m * K)
    best = faces.reshape(len(probe), len(units), units.shape[1]).max(axis=2)
    tmpl = probe @ templates(clean, units).T
    return {"best": best, "template": tmpl, "max": np.maximum(best, tmpl)}


# --- fitting a rule: its impostor tail per enrolled person, its band margins -----------------

def draw_units(by_person: dict[str, np.ndarray], k: int, per_person: int,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Up to `per_person` distinct K-photo enrolment units per person with at least K photos."""
    units, owner = [], []
    for person in sorted(by_person):
        rows = by_person[person]
        if len(rows) < k:
            continue
        seen: set[tuple[int, ...]] = set()
        for _ in range(per_person * 4):
            u = tuple(sorted(int(r) for r in rng.choice(rows, size=k, replace=False)))
            if u not in seen:
                seen.add(u)
                units.append(u)
                owner.append(person)
            if len(seen) >= per_person or len(seen) >= math.comb(len(rows), k):
                break
    return np.array(units, np.int64).reshape(-1, k), np.array(owner)


def score_at(imp: np.ndarray, far: float) -> float | None:
    """The score a share `far` of impostor pairs reaches (None: fewer than 3 of them expected)."""
    if imp.size * far < 3:
        return None
    return float(np.quantile(imp, 1 - far, method="higher"))


@dataclass
class RuleFit:
    """One rule fitted on one set: its impostor tail per person and its band margins."""

    rule: str
    tail: list[tuple[float, float]]  # (per-person FAR, score), FAR descending
    margins: dict[str, float] = field(default_factory=dict)
    impostor_pairs: int = 0
    genuine_pairs: int = 0
    tar: dict[str, float] = field(default_factory=dict)  # genuine share over the tail at each FAR
    pair_margins: dict[str, float] = field(default_factory=dict)  # before the door's own (fit_door_margins)

    def threshold(self, rate: float, persons: int) -> float:
        """Accept threshold for a search of `persons` persons holding `rate` per look (the tail
        is extended beyond its last point along its last segment, as edge.core.false_admit does)."""
        from edge.core.false_admit import per_pair_far, score_at_far

        return round(min(score_at_far(self.tail, per_pair_far(rate, max(persons, 1))), 1.0), 4)

    def as_dict(self) -> dict:
        return {"tail": [[f, s] for f, s in self.tail], "margins": self.margins,
                "pair_margins": self.pair_margins,
                "impostor_pairs": self.impostor_pairs, "genuine_pairs": self.genuine_pairs, "tar": self.tar}

    @classmethod
    def from_dict(cls, rule: str, d: dict) -> "RuleFit":
        return cls(rule, [(float(f), float(s)) for f, s in d["tail"]], {str(k): float(v) for k, v in
                                                                      d.get("margins", {}).items()})


def fit_rules(probe: np.ndarray, clean: np.ndarray, person: np.ndarray, usable: np.ndarray,
              by_person: dict[str, np.ndarray], k: int, per_person: int, seed: int,
              labels: dict[str, np.ndarray] | None = None, chunk: int = 1024) -> dict[str, RuleFit]:
    """Fit every rule on one set (see the module docstring). `usable`: the probes the door
    decides; `labels`: each row's band per measure (for the margins; None: no margins)."""
    rng = np.random.default_rng([seed, k, 7])
    units, owner = draw_units(by_person, k, per_person, rng)
    rows = np.flatnonzero(usable)
    if len(units) < 2 or len(rows) == 0:
        raise ValueError(f"too few enrolment units ({len(units)}) or probes ({len(rows)}) to fit")
    imp: dict[str, list[np.ndarray]] = {r: [] for r in RULES}
    imp_rows: list[np.ndarray] = []
    gen: dict[str, list[np.ndarray]] = {r: [] for r in RULES}
    t0 = last = time.monotonic()
    for start in range(0, len(rows), chunk):
        if time.monotonic() - last >= 10:
            last = time.monotonic()
            _log(f"  tails: {start}/{len(rows)} probes x {len(units)} units ({last - t0:.0f} s)")
        part = rows[start:start + chunk]
        s = rule_scores(probe[part], clean, units)
        other = person[part][:, None] != owner[None, :]
        # genuine: the person's own units that do not hold the probe's photo
        mine = ~other & ~(units[None, :, :] == part[:, None, None]).any(axis=2)
        pr = np.broadcast_to(part[:, None], other.shape)
        imp_rows.append(pr[other])
        for r in RULES:
            imp[r].append(s[r][other])
            gen[r].append(s[r][mine])
    which = np.concatenate(imp_rows)
    out = {}
    for r in RULES:
        scores = np.concatenate(imp[r])
        genuine = np.concatenate(gen[r])
        tail = [(f, v) for f in TAIL_FARS if (v := score_at(scores, f)) is not None]
        if len(tail) < 2:
            raise ValueError(f"{scores.size} impostor pairs: too few to read a tail")
        fit = RuleFit(r, tail, impostor_pairs=int(scores.size), genuine_pairs=int(genuine.size))
        fit.tar = {f"{f:g}": round(float(np.mean(genuine >= v)), 4) for f, v in tail if f in MARGIN_FARS}
        if labels is not None:
            fit.margins = band_margins(scores, labels, which, tail)
        out[r] = fit
    return out


def band_margins(imp: np.ndarray, labels: dict[str, np.ndarray], imp_row: np.ndarray,
                 tail: list[tuple[float, float]]) -> dict[str, float]:
    """Per band, the cosine its impostor pairs need above the whole set's tail (the larger
    excess at FAR 1e-4 and 1e-5), rounded up to 4 decimals, never negative; bands with too few
    pairs to read both FARs are left out."""
    whole = dict(tail)
    out = {}
    for measure, names in all_bands().items():
        for band in names:
            sel = imp[labels[measure][imp_row] == band]
            need = []
            for f in MARGIN_FARS:
                v = score_at(sel, f)
                if v is not None and f in whole:
                    need.append(v - whole[f])
            if need:
                out[f"{measure}:{band}"] = max(0.0, math.ceil(max(need) * 1e4 - 1e-9) / 1e4)
    return out


# --- the door, decided with matrices ----------------------------------------------------------

@dataclass
class Policy:
    """How one rule is decided at one door: its threshold per look and its band margins."""

    rule: str
    threshold: float  # every look's (spent over the looks or not: edge.bench.door_templates.policies)
    margins: dict[str, float]
    second_margin: float  # the best person must beat the second by this (Thresholds.margin)
    # spend `approach`: look i's own threshold (the daemon's look_share(i) of the rate), else ()
    by_look: tuple[float, ...] = ()


def person_scores(rule: str, probe: np.ndarray, clean: np.ndarray, enrolled: dict[str, np.ndarray]):
    """(persons, (p, N) scores) of the probe rows against each enrolled person under `rule`."""
    persons = list(enrolled)
    units = np.stack([enrolled[p] for p in persons])
    return persons, rule_scores(probe, clean, units)[rule]


def decide_looks(scores: np.ndarray, looks: np.ndarray, face_margin: np.ndarray, policy: Policy):
    """Approaches of up to T looks (`looks`: (a, T) indexes into the rows of `scores`, -1 for
    none), decided look by look: the first accepted look decides. Returns (accepted (a,),
    person index (a,), deciding look's row (a,): the accepted one, else the best-scoring one)."""
    order = np.argsort(-scores, axis=1, kind="stable")  # ties: the first enrolled person, as Gallery ranks
    top = order[:, 0]
    s1 = scores[np.arange(len(scores)), top]
    # one person enrolled: no second to beat
    s2 = scores[np.arange(len(scores)), order[:, 1]] if scores.shape[1] > 1 else np.full(len(scores), -np.inf)
    n_app, t = looks.shape
    accepted = np.zeros(n_app, bool)
    who = np.full(n_app, -1)
    deciding = np.where(looks[:, 0] >= 0, looks[:, 0], 0)
    best_seen = np.full(n_app, -np.inf)
    for i in range(t):
        idx = looks[:, i]
        live = (idx >= 0) & ~accepted
        j = np.where(idx >= 0, idx, 0)
        # the accept threshold plus the face's band margin, rounded as Gallery.identify rounds it
        threshold = policy.by_look[i] if policy.by_look else policy.threshold
        accept = np.round(np.minimum(threshold + face_margin[j], 1.0), 4)
        ok = live & (s1[j] >= accept) & (s1[j] - s2[j] >= policy.second_margin)
        accepted |= ok
        who = np.where(ok, top[j], who)
        better = live & ~ok & (s1[j] > best_seen)
        best_seen = np.where(better, s1[j], best_seen)
        deciding = np.where(ok | better, j, deciding)
    return accepted, who, deciding


def face_margins(conds: list, margins: dict[str, float]) -> np.ndarray:
    """Each probe row's margin under `margins` (the largest of its bands'; edge.core.conditions)."""
    return np.array([judge(c, margins, {}).margin for c in conds], np.float32)


def run_policy(probe: np.ndarray, clean: np.ndarray, doors: list, policy: Policy, margin_of_row: np.ndarray,
               labels: dict[str, np.ndarray], looks_t: int) -> dict:
    """FPIR, FNIR, misidentified and per band (by the deciding look) over `doors`
    [(enrolled {person: rows}, mated [(person, rows)], non-mated [rows])]."""
    from edge.bench.door import fnir_at_fpir, per_band

    nm_ok, nm_row, m_ok, m_mis, m_row, nm_top, m_top = [], [], [], [], [], [], []
    for enrolled, mated, non_mated in doors:
        approaches = [rows for _, rows in mated] + list(non_mated)
        if not approaches:
            continue
        flat = np.unique(np.concatenate(approaches))
        pos = {int(r): i for i, r in enumerate(flat)}
        persons, scores = person_scores(policy.rule, probe[flat], clean, enrolled)
        looks = np.full((len(approaches), looks_t), -1)
        for a, rows in enumerate(approaches):
            looks[a, :len(rows)] = [pos[int(r)] for r in rows[:looks_t]]
        accepted, who, deciding = decide_looks(scores, looks, margin_of_row[flat], policy)
        nm = slice(len(mated), None)
        truth = np.array([persons.index(p) for p, _ in mated], int)
        mm = slice(0, len(mated))
        nm_ok.append(accepted[nm])
        nm_row.append(flat[deciding[nm]])
        m_ok.append(accepted[mm] & (who[mm] == truth))
        m_mis.append(accepted[mm] & (who[mm] != truth))
        m_row.append(flat[deciding[mm]])
        if looks_t == 1:  # the rank-1 sweep (threshold-free), single looks only
            s_first = scores[looks[:, 0]]
            nm_top.append(s_first[nm].max(axis=1))
            rank1 = s_first[mm].argmax(axis=1)
            m_top.append(np.where(rank1 == truth, s_first[mm][np.arange(len(truth)), truth], -2.0))
    cat = {k: np.concatenate(v) if v else np.zeros(0) for k, v in
           (("nm", nm_ok), ("nm_row", nm_row), ("m", m_ok), ("mis", m_mis), ("m_row", m_row))}
    nm_admit, m_okv = cat["nm"].astype(bool), cat["m"].astype(bool)
    nm_rows, m_rows = cat["nm_row"].astype(int), cat["m_row"].astype(int)
    out = {"non_mated": int(nm_admit.size), "mated": int(m_okv.size), "false_admits": int(nm_admit.sum()),
           "fpir": round(float(nm_admit.mean()), 6) if nm_admit.size else None,
           "fnir": round(1 - float(m_okv.mean()), 4) if m_okv.size else None,
           "misidentified": int(cat["mis"].astype(bool).sum())}
    if nm_top:
        nmt, mt = np.concatenate(nm_top), np.concatenate(m_top)
        v = fnir_at_fpir(nmt, mt, 1e-3)
        out["fnir_at_fpir_0.001"] = None if v is None else round(v, 4)
        out["_nm_top"], out["_nm_rows"] = nmt, nm_rows  # for the door margins (fit_door_margins)
    none = np.zeros(nm_admit.size, bool)
    out["bands"] = per_band(labels, nm_rows, m_rows, nm_admit, none, m_okv, np.zeros(m_okv.size, bool))
    for e in out["bands"].values():
        e.pop("withheld_non_mated"), e.pop("withheld_mated")
    return out


def fit_door_margins(s: "SetFaces", fit: RuleFit, rate: float, sizes: list[int], k: int,
                     galleries: int, seed: int, second_margin: float) -> dict[str, float]:
    """The rule's band margins raised to identify's own excess on the fitting set (as the
    shipped margins were: edge.bench.door.door_margins), over its doors of one look at each N:
    per band, how far over the rule's threshold its strangers' rank-1 scores ask for."""
    from edge.bench.door import door_margins

    out = dict(fit.margins)
    zero = np.zeros(len(s.conds), np.float32)
    for n in sizes:
        try:
            doors = draw_doors(s, n, k, 1, galleries, seed)
        except ValueError:
            continue
        thr = fit.threshold(rate, n)
        res = run_policy(s.ff.probe, s.ff.clean, doors, Policy(fit.rule, thr, {}, second_margin), zero,
                         s.labels, 1)
        for band, m in door_margins(s.labels, res["_nm_rows"], res["_nm_top"], thr, rate).items():
            out[band] = max(out.get(band, 0.0), m)
    return out


# --- the bench --------------------------------------------------------------------------------

@dataclass
class SetFaces:
    """One set's embeddings as the door bench sees them."""

    name: str
    ff: FolderFaces
    person: np.ndarray
    usable: np.ndarray
    by_person: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    conds: list


def load_set(pipe, data: Path, args, degrade, workers: int) -> SetFaces:
    from edge.bench.lfw import cache_dir, labelled_photos
    from edge.bench.wild import folder_faces

    names, person = labelled_photos(data, args.identities, args.seed)
    ff = folder_faces(pipe, data, names, degrade, args.seed, workers, cache_dir(), mirror=args.mirror)
    usable = ff.usable
    by_person: dict[str, list[int]] = {}
    for i in np.flatnonzero(ff.has_face):
        by_person.setdefault(str(person[i]), []).append(int(i))
    return SetFaces(data.name, ff, person, usable, {p: np.array(r) for p, r in by_person.items()},
                    ff.band_labels(), [ff.condition(i) for i in range(len(names))])


def draw_doors(s: SetFaces, n: int, k: int, looks_t: int, galleries: int, seed: int) -> list:
    """The galleries of `bench door --data --degrade` (the same seeds for one look); looks that
    the door would not decide (no face, quality gate) are dropped, approaches left empty too."""
    from edge.bench.door import draw_door

    rng = np.random.default_rng([seed, n, k, looks_t])
    doors = [draw_door(rng, s.by_person, n, k, looks_t) for _ in range(galleries)]
    if looks_t == 1:  # exactly as bench door: an approach is decided only if its photo is
        return [(e, [(p, r) for p, r in m if s.usable[r].all()], [r for r in nm if s.usable[r].all()])
                for e, m, nm in doors]
    keep = [(e, [(p, r[s.usable[r]]) for p, r in m], [r[s.usable[r]] for r in nm]) for e, m, nm in doors]
    return [(e, [(p, r) for p, r in m if len(r)], [r for r in nm if len(r)]) for e, m, nm in keep]


def policies(fits: dict[str, RuleFit], pack: str, rate: float, n: int, k: int, looks_t: int, spend: str,
             second_margin: float) -> dict[str, Policy]:
    """Every rule's policy at N persons, K photos, T looks: the fitted rules, `best-shipped`
    (the daemon's thresholds: LFW's tail per face, N x K faces, BAND_MARGINS) and, where the pack
    has a template tail for K, `max-shipped` (the daemon's `best-or-template`: TEMPLATE_TAILS,
    N persons, never under best-shipped's threshold, template_band_margins at K)."""
    from edge.core.false_admit import TEMPLATE_RULE, look_share, per_pair_far, template_photos
    from edge.core.matcher import thresholds_for

    spread = looks_t if spend == "spent" else int(spend.split("/")[1]) if spend.startswith("spent/") else 1
    # first-look: a track's first look under the daemon's [identify] rate_per = "approach";
    # approach: every look i at the daemon's share look_share(i); else one rate for every look
    rates = [rate * look_share(i) for i in range(looks_t if spend == APPROACH else 1)] \
        if spend in (FIRST_LOOK, APPROACH) else [per_pair_far(rate, spread)]

    def policy(name: str, threshold_at, margins: dict[str, float]) -> Policy:
        by_look = tuple(threshold_at(a) for a in rates)
        return Policy(name, by_look[0], margins, second_margin, by_look if spend == APPROACH else ())

    out = {r: policy(r, lambda a, f=f: f.threshold(a, n), f.margins) for r, f in fits.items()}
    # the daemon's own thresholds at this door, from its own code (edge.core.matcher)
    out["best-shipped"] = policy("best", lambda a: thresholds_for(pack, false_admit_rate=a).identify_accept(n * k),
                                 dict(thresholds_for(pack).band_margins))
    if 0 < k <= template_photos(pack):  # the daemon's `[identify] rule = "best-or-template"`
        margins = dict(thresholds_for(pack, false_admit_rate=rate, rule=TEMPLATE_RULE).person_margins)[k]
        out["max-shipped"] = policy("max", lambda a: thresholds_for(pack, false_admit_rate=a, rule=TEMPLATE_RULE)
                                    .person_accept(n, k, n * k), dict(margins))
    return out


def run(args, data: Path) -> int:
    from edge.bench.door import door_options
    from edge.bench.wild import Degrade
    from edge.core.matcher import thresholds_for
    from edge.vision.pipeline import Pipeline

    try:
        degrade = Degrade.parse(args.degrade)
        looks_list = [int(v) for v in args.looks.split(",")]
        if not looks_list or min(looks_list) < 1:
            raise ValueError("--looks takes positive numbers")
    except ValueError as exc:
        print(f"edge-verifier bench door: error: {exc}", file=sys.stderr)
        return 2
    sets_dirs = [data] + ([args.cross] if args.cross else [])
    for d in sets_dirs:
        if not d.is_dir():
            print(f"edge-verifier bench door: error: {d} not found", file=sys.stderr)
            return 2
    workers, packs, rate, sizes, photos = door_options(args)
    result: dict = {"data": [str(d) for d in sets_dirs], "degrade": degrade.label() if degrade else None,
                    "false_admit_rate": rate, "galleries": args.galleries, "seed": args.seed,
                    "units_per_person": args.units,
                    "rules": ([] if args.shipped_only else list(RULES)) + list(SHIPPED_FITS),
                    "looks_are": "different photos of one person, each degraded on its own", "packs": {}}
    for pack in packs:
        pipe = Pipeline.load(args.models_dir, precision=pack, threads=1)
        second_margin = thresholds_for(pack).margin
        sets = [load_set(pipe, d, args, degrade, workers) for d in sets_dirs]
        entry: dict = {"fits": {}, "results": []}
        fits: dict[str, dict[str, dict[str, RuleFit]]] = {}
        for s in sets:
            fits[s.name] = {str(k): {} for k in photos}
            for k in photos if not args.shipped_only else ():
                _log(f"{pack}: fitting {', '.join(RULES)} on {s.name}, K={k} ({args.units} units per person)")
                f = fit_rules(s.ff.probe, s.ff.clean, s.person, s.usable, s.by_person, k, args.units,
                              args.seed, s.labels)
                for rule_fit in f.values():
                    rule_fit.pair_margins = dict(rule_fit.margins)
                    rule_fit.margins = fit_door_margins(s, rule_fit, rate, sizes, k, args.galleries,
                                                        args.seed, second_margin)
                fits[s.name][str(k)] = f
                entry["fits"][f"{s.name}/K={k}"] = {r: v.as_dict() for r, v in f.items()}
                _log(f"{pack}: {s.name} K={k}: " + "; ".join(
                    f"{r} 1e-5 at {dict(v.tail).get(1e-5, float('nan')):.4f}, TAR {v.tar}" for r, v in f.items()))
        for test in sets:
            margin_cache: dict = {}
            for fit_on in sets if not args.shipped_only else [test]:
                for k in photos:
                    for n in sizes:
                        for looks_t in looks_list:
                            try:
                                doors = draw_doors(test, n, k, looks_t, args.galleries, args.seed)
                            except ValueError as exc:
                                entry["results"].append({"test": test.name, "fit": fit_on.name, "persons": n,
                                                         "photos_per_person": k, "looks": looks_t,
                                                         "skipped": str(exc)})
                                continue
                            # one look at the threshold of T looks: the bound where a track's
                            # T frames are all alike (the member's cost of spending over T looks)
                            spends = list(SPENDS) + ([APPROACH] if args.rate_per == "approach" else []) \
                                if looks_t > 1 else \
                                ["per-look"] + [f"spent/{t}" for t in looks_list if t > 1] + \
                                ([FIRST_LOOK] if args.rate_per == "approach" else [])
                            for spend in spends:
                                pols = policies(fits[fit_on.name][str(k)], pack, rate, n, k, looks_t, spend,
                                                second_margin)
                                for name, pol in pols.items():
                                    if name.endswith("-shipped") and fit_on is not test:
                                        continue  # fitted on neither set: once per test set
                                    key = tuple(sorted(pol.margins.items()))
                                    if key not in margin_cache:
                                        margin_cache[key] = face_margins(test.conds, pol.margins)
                                    res = run_policy(test.ff.probe, test.ff.clean, doors, pol, margin_cache[key],
                                                     test.labels, looks_t)
                                    res.pop("_nm_top", None), res.pop("_nm_rows", None)
                                    worst = max(((b, e["fpir"]) for b, e in res["bands"].items()
                                                 if e["fpir"] is not None), key=lambda x: x[1], default=("-", 0.0))
                                    res = {"test": test.name, "fit": SHIPPED_FITS.get(name, fit_on.name), "rule": name,
                                           "persons": n, "photos_per_person": k, "looks": looks_t, "spend": spend,
                                           "threshold": pol.threshold, "worst_band": list(worst), **res}
                                    entry["results"].append(res)
                                    _log(f"{pack} test {test.name} fit {res['fit']} {name} N={n} K={k} T={looks_t} "
                                         f"{spend}: threshold {res['threshold']}, FPIR "
                                         f"{(res['fpir'] or 0) * 100:.3f} % ({res['false_admits']}/"
                                         f"{res['non_mated']}), FNIR {(res['fnir'] or 0) * 100:.2f} %, worst band "
                                         f"{worst[0]} {worst[1] * 100:.3f} %, misidentified {res['misidentified']}")
        result["packs"][pack] = entry
    text = json.dumps(result)
    if args.templates_out:
        Path(args.templates_out).write_text(text)
    print(text)
    return 0
