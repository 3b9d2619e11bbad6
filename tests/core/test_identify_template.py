"""`[identify] rule = "best-or-template"` (issue 25, members in first try): a face scored against a
person by the larger of their best face and their template, each person at the threshold of their
own photo count (edge.core.false_admit.TEMPLATE_TAILS), never under today's for the same search."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.false_admit import (
    BAND_MARGINS,
    IMPOSTOR_TAILS,
    TEMPLATE_BAND_MARGINS,
    TEMPLATE_RULE,
    TEMPLATE_TAILS,
    template_photos,
)
from edge.core.matcher import Decision, Enrolled, Gallery, thresholds_for
from edge.core.settings import ConfigError
from edge.daemon.config import load
from edge.vision.packs import PACKS

RULE = thresholds_for("int8", false_admit_rate=1e-3, rule=TEMPLATE_RULE)
TODAY = thresholds_for("int8", false_admit_rate=1e-3)
K_MAX = template_photos("int8")


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _strangers(rng, persons: int, photos: int, dim: int = 128, start: int = 0) -> list[Enrolled]:
    return [Enrolled(f"s{p}", f"s{p}#{f}", _unit(rng.standard_normal(dim)), ("door",))
            for p in range(start, start + persons) for f in range(photos)]


def _spread_member(rng, centre: np.ndarray, photos: int, on_centre: float) -> list[Enrolled]:
    """`photos` faces whose cosine to `centre` is `on_centre` each, their other parts orthogonal
    to it and to each other: one face alone is weak, their mean points at the centre."""
    q, _ = np.linalg.qr(np.column_stack([centre, rng.standard_normal((centre.size, photos))]))
    off = np.sqrt(1 - on_centre ** 2)
    return [Enrolled("ann", f"ann#{f}", _unit(on_centre * centre + off * q[:, f + 1]), ("door",), "Ann")
            for f in range(photos)]


def _brute_force(gallery: Gallery, v: np.ndarray) -> list[tuple[float, str, str]]:
    by_person: dict[str, list[Enrolled]] = {}
    for f in gallery.faces:
        by_person.setdefault(f.person_id, []).append(f)
    out = []
    for pid, faces in by_person.items():
        scores = [float(_unit(f.embedding) @ v) for f in faces]
        score = max(scores)
        if len(faces) <= K_MAX:
            score = max(score, float(_unit(sum(_unit(f.embedding) for f in faces)) @ v))
        out.append((score, pid, faces[int(np.argmax(scores))].face_id))
    return sorted(out, key=lambda x: (-x[0], x[1]))


@pytest.mark.parametrize("pack", ["int8", "int8-mirror"])
def test_the_shipped_tables_are_measured_and_grow_with_the_photos(pack):
    assert template_photos(pack) == K_MAX >= 3  # enrolment takes three photos by default
    tails = TEMPLATE_TAILS[pack]
    rule = thresholds_for(pack, false_admit_rate=1e-3, rule=TEMPLATE_RULE)
    for k in range(1, K_MAX + 1):
        fars = [f for f, _ in tails[k]]
        scores = [s for _, s in tails[k]]
        assert fars == sorted(fars, reverse=True) and scores == sorted(scores)
    for k in range(2, K_MAX + 1):  # more photos: a heavier tail at every point
        assert all(a <= b for (_, a), (_, b) in zip(tails[k - 1], tails[k]))
    # one photo: the rule is the best face, its tail the per-face one measured on a subset of
    # the pairs (within sampling noise; the threshold never goes under today's anyway)
    per_face = dict(IMPOSTOR_TAILS[pack])
    assert all(abs(s - per_face[f]) < 2e-3 for f, s in tails[1] if f in per_face and f >= 1e-6)
    assert dict(rule.band_margins) == BAND_MARGINS[pack]  # a person scored by best face: today's
    per_k = dict(rule.person_margins)
    assert sorted(per_k) == list(range(1, K_MAX + 1))
    for k, own in TEMPLATE_BAND_MARGINS[pack].items():
        margins = dict(per_k[k])
        assert all(margins[b] >= m for b, m in BAND_MARGINS[pack].items())
        assert all(margins[b] >= m for b, m in own.items())


@pytest.mark.parametrize("persons", [10, 100, 400, 5000])
def test_a_persons_threshold_follows_their_photos_and_is_never_under_todays(persons):
    per_k = [RULE.person_accept(persons, k, persons * 3) for k in range(1, K_MAX + 2)]
    today = TODAY.identify_accept(persons * 3)
    assert all(t >= today for t in per_k)
    assert per_k[:K_MAX] == sorted(per_k[:K_MAX])
    assert per_k[K_MAX] == today  # more photos than measured: today's rule for that person


def test_a_member_whose_every_face_falls_short_is_admitted_by_their_template():
    rng = np.random.default_rng(5)
    centre = _unit(rng.standard_normal(128))
    faces = _strangers(rng, 99, 3) + _spread_member(rng, centre, 3, on_centre=0.48)
    today, rule = Gallery(faces, TODAY), Gallery(faces, RULE)
    before, after = today.identify(centre, ["door"]), rule.identify(centre, ["door"])
    assert before.candidates[0].person_id == "ann" and before.decision is not Decision.ACCEPT
    assert before.candidates[0].score == pytest.approx(0.48, abs=1e-5)  # each face alone
    assert after.decision is Decision.ACCEPT and after.candidates[0].person_id == "ann"
    assert after.candidates[0].score > 0.6  # their template
    assert after.threshold == RULE.person_accept(100, 3, 300) == rule.identify_threshold(["door"])
    assert after.candidates[0].face_id in {"ann#0", "ann#1", "ann#2"}


def test_a_person_with_more_photos_than_measured_keeps_the_best_face_rule():
    rng = np.random.default_rng(6)
    centre = _unit(rng.standard_normal(128))
    faces = _strangers(rng, 99, 3) + _spread_member(rng, centre, K_MAX + 1, on_centre=0.48)
    res = Gallery(faces, RULE).identify(centre, ["door"])
    assert res.candidates[0].person_id == "ann"
    assert res.candidates[0].score == pytest.approx(0.48, abs=1e-5)  # no template for Ann
    assert res.decision is not Decision.ACCEPT
    assert res.threshold == TODAY.identify_accept(len(faces))


@pytest.mark.parametrize("groups", [None, ["a"], ["a", "b"]])
def test_ranking_is_the_brute_force_larger_of_best_face_and_template(groups):
    rng = np.random.default_rng(8)
    faces = []
    for p in range(60):  # 1 to K_MAX + 2 photos each, in three groups
        centre = _unit(rng.standard_normal(64))
        for f in range(1 + p % (K_MAX + 2)):
            faces.append(Enrolled(f"p{p}", f"p{p}#{f}", _unit(centre + 0.9 * rng.standard_normal(64)),
                                  ("abc"[p % 3],)))
    gallery = Gallery(faces, RULE)
    searched = Gallery([f for f in faces if groups is None or set(f.group_ids) & set(groups)], RULE)
    for _ in range(20):
        v = _unit(rng.standard_normal(64))
        expected = _brute_force(searched, v)[:5]
        got = gallery.identify(v, groups, top_k=5).candidates
        assert [(c.person_id, c.face_id) for c in got] == [(pid, fid) for _, pid, fid in expected]
        assert [c.score for c in got] == pytest.approx([s for s, _, _ in expected], abs=1e-5)


def test_two_people_too_close_are_still_not_accepted():
    rng = np.random.default_rng(9)
    centre = _unit(rng.standard_normal(128))
    twin = [Enrolled("bea", f"bea#{f}", e.embedding, ("door",)) for f, e in
            enumerate(_spread_member(rng, centre, 3, on_centre=0.48))]
    faces = _strangers(rng, 98, 3) + _spread_member(rng, centre, 3, on_centre=0.48) + twin
    res = Gallery(faces, RULE).identify(centre, ["door"])
    assert res.candidates[0].score > res.threshold and res.decision is Decision.UNCERTAIN


def test_packs_without_measured_tails_refuse_the_rule_at_start(tmp_path):
    for pack in PACKS:
        if template_photos(pack):
            continue
        with pytest.raises(ValueError, match="no measured tail"):
            thresholds_for(pack, false_admit_rate=1e-3, rule=TEMPLATE_RULE)
        cfg = tmp_path / f"{pack}.toml"
        cfg.write_text(f'[vision]\nprecision = "{pack}"\n[identify]\nrule = "{TEMPLATE_RULE}"\n')
        with pytest.raises(ConfigError, match="no measured tail"):
            load(cfg)
    cfg = tmp_path / "typo.toml"
    cfg.write_text('[identify]\nrule = "template"\n')
    with pytest.raises(ConfigError, match="identify.rule"):
        load(cfg)
    # the default, auto: the rule where the pack has it, the best face where it has not
    assert load(None).thresholds().rule == TEMPLATE_RULE
    fp32 = tmp_path / "fp32.toml"
    fp32.write_text('[vision]\nprecision = "fp32"\n')
    assert load(fp32).thresholds().rule == "best"


def test_a_face_in_a_band_is_decided_at_its_persons_own_margin_and_the_event_says_so():
    """Band margins are fitted per photo count (a K = 3 margin does not hold at K = 2): the
    first person's own applies when larger than today's, and the outcome names it."""
    from edge.core.conditions import Condition
    from edge.daemon.decide import Decider

    rng = np.random.default_rng(5)
    centre = _unit(rng.standard_normal(128))
    faces = _strangers(rng, 99, 2) + _spread_member(rng, centre, 2, on_centre=0.6)
    gallery = Gallery(faces, RULE)
    large = Condition(size=140, yaw=0, pitch=0, sharpness=300)  # size 96+, sharpness 150+
    own, band = RULE.person_margin(2, {"size": "96+", "pose": "0-15", "sharpness": "150+"})
    today = max((m for b, m in RULE.band_margins if b in ("size:96+", "pose:0-15", "sharpness:150+")), default=0.0)
    assert own > today  # K = 2's margin for large, sharp faces is the larger (fitted on LFW degraded)
    out = Decider(None).identify(gallery, centre, ["door"], condition=large)
    base = RULE.person_accept(100, 2, 200)
    assert out.threshold == round(base + own, 4)
    assert out.condition.margin == round(own, 4) and out.condition.band == band
    assert out.rule == TEMPLATE_RULE and out.person_id == "ann"


def test_any_number_of_group_sets_asked_keeps_results_exact_and_memory_bounded():
    """The rows sorted by person are kept per group set searched; API callers may name any set,
    so at most 32 are kept, and a set asked again after a clear gives the same answer."""
    rng = np.random.default_rng(10)
    names = [f"g{i}" for i in range(40)]
    faces = [Enrolled(f"p{p}", f"p{p}#{f}", _unit(rng.standard_normal(32)), (names[p % 40], names[(p + 1) % 40]))
             for p in range(120) for f in range(3)]
    gallery = Gallery(faces, RULE)
    v = _unit(rng.standard_normal(32))
    first = [gallery.identify(v, [g]).candidates for g in names]
    assert len(gallery._segments) <= 32
    again = [gallery.identify(v, [g]).candidates for g in names]
    assert again == first
    for g, got in zip(names, first):
        expected = _brute_force(Gallery([f for f in faces if g in f.group_ids], RULE), v)[:5]
        assert [c.person_id for c in got] == [pid for _, pid, _ in expected]
