"""The gallery ranks persons by their best face, filters by group, and applies the policy."""

import numpy as np
import pytest

from edge.core.matcher import Decision, Enrolled, Gallery, Thresholds, confidence


def _gallery(rng, persons=40, faces_each=3, dim=64, groups=("a", "b", "c")):
    faces = []
    for p in range(persons):
        for f in range(faces_each):
            faces.append(Enrolled(f"p{p}", f"p{p}-f{f}", rng.standard_normal(dim).astype(np.float32),
                                  (groups[p % len(groups)],), person_name=f"Person {p}"))
    return Gallery(faces, thresholds=Thresholds(accept=0.6, reject=0.3))


def _brute_force(gallery, v, groups):
    v = v / np.linalg.norm(v)
    best = {}
    for f in gallery.faces:
        if groups is not None and not set(groups) & set(f.group_ids):
            continue
        s = float(f.embedding @ v / np.linalg.norm(f.embedding))
        if f.person_id not in best or s > best[f.person_id][0]:
            best[f.person_id] = (s, f.face_id)
    return sorted(((s, pid, fid) for pid, (s, fid) in best.items()), reverse=True)


@pytest.mark.parametrize("groups", [None, ["a"], ["b", "c"], ["a", "nope"]])
def test_identify_ranks_each_person_by_their_best_face_within_the_groups(groups):
    rng = np.random.default_rng(7)
    gallery = _gallery(rng)
    for _ in range(20):
        v = rng.standard_normal(64).astype(np.float32)
        expected = _brute_force(gallery, v, groups)[:5]
        got = gallery.identify(v, groups, top_k=5).candidates
        assert [(c.person_id, c.face_id) for c in got] == [(pid, fid) for _, pid, fid in expected]
        assert [c.score for c in got] == pytest.approx([s for s, _, _ in expected], abs=1e-5)


def test_identify_in_unknown_groups_finds_nobody():
    gallery = _gallery(np.random.default_rng(1))
    result = gallery.identify(np.ones(64, np.float32), ["nope"])
    assert result.candidates == [] and result.decision is Decision.REJECT


def test_a_persons_groups_are_the_union_of_their_faces_groups():
    v = np.ones(8, np.float32)
    gallery = Gallery([Enrolled("ann", "f1", v, ("night", "staff")), Enrolled("bob", "f2", v, ("guests",)),
                       Enrolled("ann", "f3", v, ("cleaners", "staff"))])
    assert gallery.groups_of("ann") == ("cleaners", "night", "staff")
    assert gallery.groups_of("bob") == ("guests",)
    assert gallery.groups_of("nobody") == ()


def test_verify_uses_the_best_of_the_claimed_persons_faces():
    rng = np.random.default_rng(3)
    gallery = _gallery(rng)
    target = gallery.faces[4]  # p1-f1
    probe = target.embedding + 0.1 * rng.standard_normal(64).astype(np.float32)
    cand = gallery.verify(probe, "p1")
    assert cand.face_id == "p1-f1" and cand.person_name == "Person 1"
    assert cand.score > 0.9
    assert gallery.verify(probe, "nobody") is None


def test_two_people_too_close_are_uncertain_not_accepted():
    base = np.zeros(8, np.float32)
    base[0] = 1.0
    twin = base.copy()
    twin[1] = 0.05  # nearly the same direction: the margin is tiny
    gallery = Gallery([Enrolled("alice", "a1", base), Enrolled("bob", "b1", twin)],
                      thresholds=Thresholds(accept=0.6, reject=0.3, margin=0.05))
    result = gallery.identify(base)
    assert result.candidates[0].person_id == "alice"
    assert result.candidates[0].score >= 0.6
    assert result.decision is Decision.UNCERTAIN


def test_confidence_is_monotone_and_puts_the_thresholds_at_40_and_70():
    t = Thresholds(accept=0.45, reject=0.28)
    scores = np.linspace(-1, 1, 201)
    values = [confidence(s, t) for s in scores]
    assert values == sorted(values) and values[0] == 0 and values[-1] == 100
    assert confidence(0.45, t) == 70 and confidence(0.28, t) == 40


def test_every_model_pack_has_calibrated_thresholds_and_can_be_configured(models_dir):
    import json

    from edge.core.matcher import CALIBRATED_THRESHOLDS
    from edge.daemon.config import VisionSettings
    from edge.hub.config import VisionSection
    from edge.vision.packs import PACKS

    built = json.loads((models_dir / "models.json").read_text())["packs"]
    assert set(built) == set(PACKS) == set(CALIBRATED_THRESHOLDS)
    for pack in PACKS:
        assert VisionSettings(precision=pack).precision == VisionSection(precision=pack).precision == pack
    for t in CALIBRATED_THRESHOLDS.values():
        assert -1 < t.reject < t.accept < 1
