"""Identify's accept threshold from a false-admit rate per approach and the gallery's size.

A stranger at the door is compared with every enrolled face, and is admitted when any one of
them clears the accept threshold. With a per-pair false-accept rate p and F faces searched,
that happens with probability about 1 - (1 - p)^F: a fixed threshold lets more strangers in
as the gallery grows. So the threshold is derived instead, for the configured rate alpha
(`[identify] false_admit_rate`, per approach):

    p = 1 - (1 - alpha)^(1/F)          per-pair FAR that keeps the whole search at alpha
    threshold = tail(p)                the pack's impostor score at that FAR

`tail` interpolates linearly in log10(FAR) on the pack's impostor tail: the cosine that a share
1e-3 ... 1e-7 of all LFW cross-identity pairs reaches (IMPOSTOR_TAILS, measured by
`edge-verifier bench lfw --calibrate`), and extends the last segment's slope beyond 1e-7. F
counts faces, not persons: faces of one person are not independent trials, so counting them
all errs on the strict side (`edge-verifier bench door` measures how much). Identify is never
easier than a 1:1 claim: the result is at least the pack's verify accept threshold (and at most
1.0, where identify accepts nobody: a gallery too large to hold that rate with this embedder).
"""

from __future__ import annotations

import math
from typing import Sequence

DEFAULT_FALSE_ADMIT_RATE = 1e-3

# [per-pair FAR, cosine reached by that share of impostor pairs], per model pack: measured on
# every cross-identity pair among the 7,701 LFW photos (29.6 million pairs) by
# `edge-verifier bench lfw --precision all --calibrate` (int8 packs: models build 10, on an AMD
# EPYC with AVX2; fp32 packs: build 8, the same fp32 bytes).
IMPOSTOR_TAILS: dict[str, tuple[tuple[float, float], ...]] = {
    "int8": ((1e-3, 0.3732), (3e-4, 0.4030), (1e-4, 0.4285), (3e-5, 0.4552), (1e-5, 0.4791),
             (3e-6, 0.5062), (1e-6, 0.5313), (3e-7, 0.5890), (1e-7, 0.7643)),
    "fp32": ((1e-3, 0.3727), (3e-4, 0.4024), (1e-4, 0.4280), (3e-5, 0.4543), (1e-5, 0.4782),
             (3e-6, 0.5069), (1e-6, 0.5288), (3e-7, 0.5883), (1e-7, 0.7837)),
    "int8-lite": ((1e-3, 0.3408), (3e-4, 0.3810), (1e-4, 0.4150), (3e-5, 0.4483), (1e-5, 0.4761),
                  (3e-6, 0.5040), (1e-6, 0.5341), (3e-7, 0.5700), (1e-7, 0.7535)),
    "fp32-lite": ((1e-3, 0.3388), (3e-4, 0.3791), (1e-4, 0.4130), (3e-5, 0.4467), (1e-5, 0.4758),
                  (3e-6, 0.5055), (1e-6, 0.5363), (3e-7, 0.5704), (1e-7, 0.7628)),
    # int8's files, crop and mirror averaged: `bench lfw --precision int8-mirror --calibrate`, build 10.
    "int8-mirror": ((1e-3, 0.3751), (3e-4, 0.4050), (1e-4, 0.4301), (3e-5, 0.4569), (1e-5, 0.4808),
                    (3e-6, 0.5064), (1e-6, 0.5337), (3e-7, 0.5833), (1e-7, 0.7777)),
}


# Issue 25: the tables above are LFW's, faces of 100+ px, mostly frontal. Smaller, blurred or
# turned faces have a heavier impostor tail. Per condition band (edge.core.conditions), the cosine
# added to both accept thresholds (1:1 and identify) so that the band's impostor tail holds the
# configured rate: the largest of the margins fitted on LFW and on CFP degraded as a door sees them
# (`edge-verifier bench door --data DIR --degrade ...`, docs/benchmarks.md "Identify in the wild"),
# measured on the int8 pack and applied to every pack that has none of its own (never negative:
# no threshold falls below today's). Bands not listed need none.
# Measured 2026-12-06 on models build 10 (AMD EPYC): LFW (7,701 photos) and CFP (3,000), each as
# it is and degraded (size=32:128,blur=0:1.2,rotate=-8:8); per band the larger of the 1:1 tail's
# excess at FAR 1e-4 and 1e-5 over the shipped tail and identify's own excess at 100 x 3 and 400 x 3.
# Every margin comes from LFW: CFP's tails are lighter than LFW's in every band. size:0-64 was
# re-fitted on 10 galleries per point instead of 3 (0.0020 -> 0.0066): with 0.0020, LFW degraded's
# small faces at 400 x 3 let 0.107 % of strangers in (15 of 13,976).
BAND_MARGINS: dict[str, dict[str, float]] = {
    "int8": {"pose:15-25": 0.0046, "pose:25+": 0.0127, "sharpness:50-150": 0.0024,
             "sharpness:150+": 0.0028, "size:0-64": 0.0066, "size:64-96": 0.0012},
    # Its own: averaging with the mirror makes turned faces' impostor tail heavier than int8's
    # against its own shipped tail (LFW pose 25+: +0.0162 over 0.4301, int8 +0.0127 over 0.4285),
    # so int8's margins let 0.122 % of LFW's turned strangers in at 400 x 3. The same runs and
    # rule as int8's (`bench door ... --precision int8-mirror`, 2026-12-06, build 10); every
    # margin comes from LFW (clean: pose, size 64-96, sharpness 50-150; degraded: sharpness
    # 150+); CFP's fits are all zero and LFW degraded's size 0-64 fit is zero.
    "int8-mirror": {"pose:15-25": 0.0055, "pose:25+": 0.0162, "sharpness:50-150": 0.0017,
                    "sharpness:150+": 0.0015, "size:64-96": 0.0022},
}
# Beyond these the door withholds its decision and asks the person to act: faces smaller than
# `min_size` px (box, shorter side) -> step_closer; turned more than `max_turn` degrees (yaw or
# pitch) -> face_the_camera. Set where no margin could hold the rate without losing members.
DOOR_LIMITS: dict[str, float] = {}


def band_margins(pack: str) -> dict[str, float]:
    """The condition margins applied to `pack` (the int8 pack's where the pack has none)."""
    return dict(BAND_MARGINS.get(pack) or BAND_MARGINS["int8"])


# Packs whose false-admit rate was measured not to hold on a set other than the one their tail was
# read on (`bench door --templates --shipped-only --data ../shared/faces/lfw --cross
# ../shared/faces/cfp [--bands | --degrade ...] --precision PACK`, docs/benchmarks.md, "The other
# packs"): the daemon says so at start. int8's, int8-mirror's and fp32's hold on CFP.
RATE_NOT_HELD: dict[str, str] = {
    "int8-lite": "on CFP, held out, strangers were admitted at up to 0.13 % on a track's first look "
                 "and 0.21 % per look at false_admit_rate 1e-3 (up to 0.52 % in a condition band): "
                 "its embedder confuses a few look-alikes within a group that SFace tells apart",
    "fp32-lite": "not measured beyond LFW; it is int8-lite's network, whose rate did not hold on CFP",
}


def door_limits() -> dict[str, float]:
    return dict(DOOR_LIMITS)


def look_share(look: int) -> float:
    """The share of the per-approach rate that a track's look number `look` (0: its first scored
    frame) may spend under `[identify] rate_per = "approach"`: 1/2, 1/4, 1/8, ... A stranger's
    real frames are nearly independent trials at the threshold (`bench door --tracks`: 5 looks
    worth 4.8 at the door's per-person FAR), so every look is one more chance; these shares sum
    to under 1 however many looks a track gives, and the first look keeps the largest."""
    if look < 0:
        raise ValueError("look counts from 0")
    return 0.5 ** (look + 1)


def per_pair_far(false_admit_rate: float, faces: int) -> float:
    """The per-pair FAR at which a search of `faces` faces admits a stranger at the given rate."""
    if faces <= 1:
        return false_admit_rate
    # -expm1(log1p(-a)/F) is 1 - (1 - a)^(1/F) without losing digits for small a.
    return -math.expm1(math.log1p(-false_admit_rate) / faces)


def score_at_far(tail: Sequence[tuple[float, float]], far: float) -> float:
    """The cosine that impostor pairs reach with probability `far`, from the tail table."""
    pts = sorted(tail, reverse=True)  # FAR descending: 1e-3 first
    xs = [math.log10(f) for f, _ in pts]
    x = math.log10(far)
    if x >= xs[0]:
        i = 0
    elif x <= xs[-1]:
        i = len(pts) - 2
    else:
        i = next(k for k in range(len(pts) - 1) if xs[k] >= x >= xs[k + 1])
    (x0, y0), (x1, y1) = (xs[i], pts[i][1]), (xs[i + 1], pts[i + 1][1])
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def far_at_score(tail: Sequence[tuple[float, float]], score: float) -> float:
    """The per-pair FAR at which impostor pairs reach `score`: score_at_far's inverse on the same
    segments (log10 FAR linear in the score), extended beyond the table's ends likewise."""
    pts = sorted(tail, reverse=True)  # FAR descending: scores ascending
    ys = [y for _, y in pts]
    if score <= ys[0]:
        i = 0
    elif score >= ys[-1]:
        i = len(pts) - 2
    else:
        i = next(k for k in range(len(pts) - 1) if ys[k] <= score <= ys[k + 1])
    (f0, y0), (f1, y1) = pts[i], pts[i + 1]
    x0, x1 = math.log10(f0), math.log10(f1)
    return 10 ** (x0 + (x1 - x0) * (score - y0) / (y1 - y0))


def accept_on_tail(tail: Sequence[tuple[float, float]] | None, false_admit_rate: float, trials: int,
                   floor: float) -> float:
    """The score `tail` reaches at the per-trial FAR that keeps `trials` trials at the rate,
    never under `floor` (nor over 1.0); `floor` itself without a tail."""
    if not tail:
        return floor
    derived = score_at_far(tail, per_pair_far(false_admit_rate, max(trials, 1)))
    # Past 1.0 no face can be accepted: a gallery too large for this rate with this embedder.
    return round(min(max(derived, floor), 1.0), 4)


def identify_accept(pack: str, false_admit_rate: float, faces: int, verify_accept: float) -> float:
    """Identify's accept threshold for `faces` searched faces (see the module docstring)."""
    return accept_on_tail(IMPOSTOR_TAILS.get(pack), false_admit_rate, faces, verify_accept)


def claim_accept(pack: str, accept: float, faces: int, share: float = 1.0) -> float:
    """A 1:1 claim's accept threshold under `[verify] rate_per = "claim"`: the FAR that `accept`
    stands for on the pack's impostor tail held per claim, not per pair and look. The claimed
    person's `faces` are that many trials (the claim is scored on the best of them: at the pack's
    accept, a person of 3 photos let 2.6e-4 of LFW's strangers in, of 5 photos 4.2e-4), and this
    look may spend `share` of it (look_share: a claim's frames are nearly independent chances).
    Never under `accept`; `accept` itself for a pack without a tail."""
    tail = IMPOSTOR_TAILS.get(pack)
    if not tail:
        return accept
    return accept_on_tail(tail, far_at_score(tail, accept) * share, faces, accept)


# --- identify rule `best-or-template` (issue 25, members in first try) -------------------------
#
# A face scored against one enrolled person of K photos by the larger of their best face and
# their template (the renormalised mean of their K embeddings): more members admitted on the first
# look (docs/benchmarks.md "Person templates"). The score is on a scale of its own, so its
# threshold is read off its own impostor tail, measured **per enrolled person** (a stranger against
# one person's K photos), which grows with K: one tail per K. A search of N persons holds the
# false-admit rate at the per-person FAR 1 - (1 - rate)^(1/N) (persons, not faces, are the trials).
TEMPLATE_RULE = "best-or-template"
IDENTIFY_RULES = ("best", TEMPLATE_RULE)

# {pack: {K: ((per-person FAR, cosine), ...)}}: `edge-verifier bench door --templates --data LFW
# --photos 1,2,3,4,5`, rule `max`, fitted on LFW's 7,701 photos (the set with the heavier tail:
# fitted on CFP no rule held on LFW). A pack without a table, or a person with more photos than
# the largest K here, is scored by the best face at today's threshold.
TEMPLATE_TAILS: dict[str, dict[int, tuple[tuple[float, float], ...]]] = {
    # models build 10, AMD EPYC, 2026-12-06; at each FAR the larger of LFW's tail as it is and
    # degraded (size=32:128,blur=0:1.2,rotate=-8:8), and never lighter than the tail of fewer photos
    "int8": {
        1: ((1e-3, 0.3732), (3e-4, 0.4029), (1e-4, 0.4284), (3e-5, 0.4551), (1e-5, 0.4789),
            (3e-6, 0.5057), (1e-6, 0.5325), (3e-7, 0.6170)),
        2: ((1e-3, 0.3954), (3e-4, 0.4250), (1e-4, 0.4508), (3e-5, 0.4783), (1e-5, 0.4999),
            (3e-6, 0.5285), (1e-6, 0.5536), (3e-7, 0.6170)),
        3: ((1e-3, 0.4028), (3e-4, 0.4320), (1e-4, 0.4591), (3e-5, 0.4858), (1e-5, 0.5096),
            (3e-6, 0.5359), (1e-6, 0.5542), (3e-7, 0.6170)),
        4: ((1e-3, 0.4076), (3e-4, 0.4374), (1e-4, 0.4646), (3e-5, 0.4892), (1e-5, 0.5148),
            (3e-6, 0.5465), (1e-6, 0.5600), (3e-7, 0.6170)),
        5: ((1e-3, 0.4110), (3e-4, 0.4412), (1e-4, 0.4680), (3e-5, 0.4938), (1e-5, 0.5197),
            (3e-6, 0.5510), (1e-6, 0.5687)),
    },
    # int8's files, crop and mirror averaged: the same runs with --precision int8-mirror
    "int8-mirror": {
        1: ((1e-3, 0.3750), (3e-4, 0.4050), (1e-4, 0.4301), (3e-5, 0.4569), (1e-5, 0.4807),
            (3e-6, 0.5062), (1e-6, 0.5340), (3e-7, 0.6231)),
        2: ((1e-3, 0.3974), (3e-4, 0.4268), (1e-4, 0.4527), (3e-5, 0.4797), (1e-5, 0.5034),
            (3e-6, 0.5275), (1e-6, 0.5564), (3e-7, 0.6231)),
        3: ((1e-3, 0.4047), (3e-4, 0.4341), (1e-4, 0.4601), (3e-5, 0.4879), (1e-5, 0.5097),
            (3e-6, 0.5355), (1e-6, 0.5564), (3e-7, 0.6231)),
        4: ((1e-3, 0.4097), (3e-4, 0.4393), (1e-4, 0.4658), (3e-5, 0.4913), (1e-5, 0.5138),
            (3e-6, 0.5437), (1e-6, 0.5612), (3e-7, 0.6231)),
        5: ((1e-3, 0.4127), (3e-4, 0.4425), (1e-4, 0.4710), (3e-5, 0.4950), (1e-5, 0.5198),
            (3e-6, 0.5503), (1e-6, 0.5662)),
    },
}
# {pack: {K: {band: cosine}}}: the rule's band margins per photo count, made as BAND_MARGINS were
# (same runs; per band the larger of LFW's and LFW degraded's, each over its own tail, which the
# table above is never under). A margin fitted at one K does not hold at another (LFW degraded,
# K = 2: size 96+ and sharpness 150+ strangers at 0.13-0.15 % with K = 3's margins), so each K has
# its own. A face's threshold is raised by the larger of its person's and BAND_MARGINS'.
TEMPLATE_BAND_MARGINS: dict[str, dict[int, dict[str, float]]] = {
    "int8": {
        1: {"pose:15-25": 0.0062, "pose:25+": 0.0265, "sharpness:150+": 0.0256, "sharpness:50-150": 0.0037,
            "size:64-96": 0.0053, "size:96+": 0.0065},
        2: {"pose:15-25": 0.0071, "pose:25+": 0.0080, "sharpness:150+": 0.0271, "size:0-64": 0.0033,
            "size:64-96": 0.0005, "size:96+": 0.0271},
        3: {"pose:0-15": 0.0076, "pose:15-25": 0.0048, "pose:25+": 0.0148, "sharpness:0-50": 0.0105,
            "sharpness:150+": 0.0102, "sharpness:50-150": 0.0007, "size:0-64": 0.0120, "size:64-96": 0.0004,
            "size:96+": 0.0011},
        4: {"pose:0-15": 0.0059, "pose:15-25": 0.0039, "pose:25+": 0.0078, "sharpness:0-50": 0.0094,
            "sharpness:150+": 0.0021, "sharpness:50-150": 0.0020, "size:0-64": 0.0206, "size:64-96": 0.0021,
            "size:96+": 0.0015},
        5: {"pose:0-15": 0.0013, "pose:15-25": 0.0068, "pose:25+": 0.0211, "sharpness:0-50": 0.0025,
            "sharpness:150+": 0.0001, "sharpness:50-150": 0.0128, "size:0-64": 0.0269, "size:64-96": 0.0013,
            "size:96+": 0.0035},
    },
    "int8-mirror": {
        1: {"pose:15-25": 0.0047, "pose:25+": 0.0206, "sharpness:150+": 0.0206, "sharpness:50-150": 0.0059,
            "size:0-64": 0.0001, "size:64-96": 0.0038, "size:96+": 0.0109},
        2: {"pose:15-25": 0.0097, "pose:25+": 0.0094, "sharpness:150+": 0.0319, "size:0-64": 0.0013,
            "size:64-96": 0.0005, "size:96+": 0.0319},
        3: {"pose:0-15": 0.0054, "pose:15-25": 0.0059, "pose:25+": 0.0187, "sharpness:0-50": 0.0083,
            "sharpness:150+": 0.0067, "size:0-64": 0.0110, "size:96+": 0.0036},
        4: {"pose:0-15": 0.0058, "pose:15-25": 0.0112, "pose:25+": 0.0134, "sharpness:0-50": 0.0061,
            "sharpness:150+": 0.0068, "sharpness:50-150": 0.0023, "size:0-64": 0.0166, "size:64-96": 0.0015,
            "size:96+": 0.0079},
        5: {"pose:0-15": 0.0028, "pose:15-25": 0.0069, "pose:25+": 0.0264, "sharpness:150+": 0.0025,
            "sharpness:50-150": 0.0028, "size:0-64": 0.0243, "size:96+": 0.0042},
    },
}


def template_photos(pack: str) -> int:
    """The largest photo count K whose template tail `pack` has (0: the rule does not apply)."""
    return max(TEMPLATE_TAILS.get(pack, {}), default=0)


def template_band_margins(pack: str, photos: int) -> dict[str, float]:
    """The margins a face's condition adds for a person of `photos` photos scored by
    `best-or-template`: per band the larger of the rule's own at that K and BAND_MARGINS."""
    out = band_margins(pack)
    for band, m in TEMPLATE_BAND_MARGINS.get(pack, {}).get(photos, {}).items():
        out[band] = max(out.get(band, 0.0), m)
    return out


def claim_template_accept(pack: str, accept: float, photos: int, share: float = 1.0) -> float:
    """A claim's accept threshold for a person of `photos` photos scored by `best-or-template`
    (the larger of their best face and their template): their photo count's per-person tail at
    the claim's share of the FAR `accept` stands for, never under the best-face claim threshold
    (claim_accept: the faces counted). That threshold itself past the measured K."""
    floor = claim_accept(pack, accept, photos, share)
    tail, pack_tail = TEMPLATE_TAILS.get(pack, {}).get(photos), IMPOSTOR_TAILS.get(pack)
    if not tail or not pack_tail:
        return floor
    return accept_on_tail(tail, far_at_score(pack_tail, accept) * share, 1, floor)


def template_accept(pack: str, false_admit_rate: float, persons: int, photos: int, today: float) -> float:
    """The accept threshold of one person of `photos` photos in a search of `persons` persons
    under `best-or-template`; `today` is the best-face threshold of the same search (faces
    counted), which it never goes under. None of it applies past the measured K: then `today`."""
    return accept_on_tail(TEMPLATE_TAILS.get(pack, {}).get(photos), false_admit_rate, persons, today)
