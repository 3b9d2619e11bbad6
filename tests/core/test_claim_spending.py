"""A 1:1 claim holds the FAR its accept threshold stands for per claim ([verify] rate_per =
"claim", edge.core.false_admit.claim_accept): the claimed person's faces are counted as trials,
the claim's looks share the rate, and the hub's yes admits only at the edge's own threshold.

The attacks: a stranger holding a member's badge is scored against the best of the member's
enrolled faces (at the pack's accept, 2.5e-4 of LFW's strangers passed a person of 3 photos,
not 1e-4) and gets one more chance at every frame the camera scores before the claim settles."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.core.false_admit import IMPOSTOR_TAILS, claim_accept, far_at_score, look_share, score_at_far
from edge.core.matcher import CALIBRATED_THRESHOLDS, Enrolled, Gallery, thresholds_for
from edge.daemon.decide import Decider

INT8 = CALIBRATED_THRESHOLDS["int8"]


def _at(target: np.ndarray, score: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine with the unit `target` is exactly `score`."""
    noise = rng.normal(size=target.shape)
    noise -= (noise @ target) * target
    noise /= np.linalg.norm(noise)
    return (score * target + math.sqrt(1 - score * score) * noise).astype(np.float32)


def _person(rng: np.random.Generator, faces: int, pid: str = "alice") -> list[Enrolled]:
    vs = rng.normal(size=(faces, 128))
    vs /= np.linalg.norm(vs, axis=1, keepdims=True)
    return [Enrolled(pid, f"{pid}#{i}", v.astype(np.float32)) for i, v in enumerate(vs)]


def test_far_at_score_inverts_score_at_far_inside_and_beyond_the_table():
    tail = IMPOSTOR_TAILS["int8"]
    for far in (3e-3, 1e-3, 4e-4, 1e-4, 5e-5, 1.7e-5, 2e-7, 1e-8):
        assert far_at_score(tail, score_at_far(tail, far)) == pytest.approx(far, rel=1e-9)
    # the pack's accept threshold stands for FAR 1e-4 on its own tail
    assert far_at_score(tail, INT8.accept) == pytest.approx(1e-4, rel=0.01)


def test_a_claim_threshold_counts_the_persons_faces_and_the_looks_share():
    one, three = INT8.claim_accept(1), INT8.claim_accept(3)
    assert one == INT8.accept  # one face, a single image: the pack's accept, unchanged
    assert three == claim_accept("int8", INT8.accept, 3) > one
    looks = [INT8.claim_accept(3, look_share(n)) for n in range(5)]
    assert looks == sorted(looks) and looks[0] > three
    # held per claim: three faces at the per-face FAR that keeps the claim at the accept's FAR
    far = far_at_score(IMPOSTOR_TAILS["int8"], INT8.accept)
    assert 1 - (1 - far_at_score(IMPOSTOR_TAILS["int8"], three)) ** 3 == pytest.approx(far, rel=2e-3)
    # no tail (a pack measured on nothing): the accept as configured
    assert claim_accept("no-such-pack", 0.5, 5, 0.25) == 0.5


def test_a_stranger_just_over_accept_against_one_of_three_faces_is_accepted_per_look_not_per_claim():
    rng = np.random.default_rng(3)
    faces = _person(rng, 3)
    gallery = Gallery(faces, thresholds_for("int8"))
    stranger = _at(faces[1].embedding, 0.4350, rng)
    per_look = Decider(None, claim_rate_per="look").verify(gallery, stranger, "alice")
    per_claim = Decider(None).verify(gallery, stranger, "alice")
    assert (per_look.decision, per_look.threshold) == ("accept", INT8.accept)
    assert per_claim.decision == "uncertain" and per_claim.threshold == INT8.claim_accept(3) > 0.4350
    # a member well over it is accepted either way, against the face that matches
    member = _at(faces[2].embedding, 0.62, rng)
    out = Decider(None).verify(gallery, member, "alice")
    assert (out.decision, out.person_id) == ("accept", "alice")


def test_one_face_shown_for_ten_looks_of_a_claim_spends_the_claims_rate_once():
    """The same stranger's frame scoring just over accept, ten looks of one claim: every look
    admits when each spends the whole FAR; none when the claim's looks share it."""
    rng = np.random.default_rng(4)
    faces = _person(rng, 1)
    gallery = Gallery(faces, thresholds_for("int8"))
    stranger = _at(faces[0].embedding, INT8.accept + 0.004, rng)
    old, new = Decider(None, claim_rate_per="look"), Decider(None)
    assert all(old.verify(gallery, stranger, "alice", look=n).decision == "accept" for n in range(10))
    outs = [new.verify(gallery, stranger, "alice", look=n) for n in range(10)]
    assert [o.decision for o in outs] == ["uncertain"] * 10
    assert [o.look for o in outs] == list(range(1, 11))
    assert [o.rate_share for o in outs] == [0.5 ** n for n in range(1, 11)]
    assert [o.threshold for o in outs] == sorted(o.threshold for o in outs)
    assert outs[0].threshold == INT8.claim_accept(1, 0.5)


def test_the_condition_margin_adds_to_the_claims_threshold():
    from edge.core.conditions import Condition

    rng = np.random.default_rng(5)
    faces = _person(rng, 2)
    gallery = Gallery(faces, thresholds_for("int8"))
    turned = Condition(size=150.0, yaw=30.0, pitch=0.0, sharpness=300.0)
    out = Decider(None).verify(gallery, _at(faces[0].embedding, 0.7, rng), "alice", condition=turned, look=0)
    margin = dict(gallery.thresholds.band_margins)["pose:25+"]
    assert out.threshold == round(INT8.claim_accept(2, 0.5) + margin, 4)
    assert out.condition is not None and out.condition.band == "pose:25+"


class _Hub:
    """Answers /face/verify as the hub does, from a score it is told: ismatch at the pack's
    accept, the confidence of that score (edge.core.matcher.confidence)."""

    def __init__(self, score: float):
        self.score, self.asked = score, 0

    def verify(self, person_id: str, image: bytes) -> dict:
        from edge.core.matcher import confidence

        self.asked += 1
        return {"ismatch": self.score >= INT8.accept, "confidence": confidence(self.score, INT8),
                "session_id": "s"}


def test_the_hubs_yes_admits_only_at_the_edges_own_threshold():
    """An uncertain claim goes to the hub, which decides at the pack's accept on the person's
    best face: without the check its yes let in a face the claim's threshold held back."""
    rng = np.random.default_rng(6)
    faces = _person(rng, 3)
    gallery = Gallery(faces, thresholds_for("int8"))
    stranger = _at(faces[0].embedding, 0.4400, rng)
    hub = _Hub(0.4400)
    out = Decider(hub).verify(gallery, stranger, "alice", lambda: b"jpeg", look=0)
    assert hub.asked == 1 and out.cloud is not None and out.cloud.ismatch
    assert out.cloud.confidence < out.cloud_confidence_needed and (out.source, out.decision) == ("cloud", "reject")
    # a yes over the edge's threshold admits; a confidence that is no number never does
    assert Decider(_Hub(0.50)).verify(gallery, _at(faces[0].embedding, 0.44, rng), "alice",
                                      lambda: b"jpeg", look=0).decision == "accept"

    class _Odd(_Hub):
        def verify(self, person_id: str, image: bytes) -> dict:
            return {"ismatch": True, "confidence": "99"}

    assert Decider(_Odd(0.0)).verify(gallery, stranger, "alice", lambda: b"jpeg", look=0).decision == "reject"


def test_the_hub_is_held_to_the_edges_raise_not_to_its_moved_accept():
    """The hub's confidence is 70 at the pack's calibrated accept: it must reach as much over 70
    as the edge's threshold is over the edge's own accept. An edge whose [policy] accept is moved
    moves its local cut only (the hub then decides uncertain faces at its own accept)."""
    from edge.core.matcher import Thresholds, confidence, hub_confidence_needed

    assert hub_confidence_needed(INT8.accept, INT8) == 70.0
    assert hub_confidence_needed(INT8.claim_accept(3, 0.5), INT8) == confidence(INT8.claim_accept(3, 0.5), INT8) > 70
    moved = Thresholds(0.99, -1.0, pack="int8")
    assert hub_confidence_needed(0.99, moved) == 70.0
    assert hub_confidence_needed(0.99 + 0.02, moved) == confidence(INT8.accept + 0.02, INT8)


def test_under_best_or_template_a_claim_scores_the_person_as_identify_does():
    """[identify] rule best-or-template (the int8 default): a claimed person of up to 5 photos is
    scored by the larger of their best face and their template, at their photo count's own
    per-person tail (never under the best-face claim threshold); past 5 photos, the best face."""
    t = thresholds_for("int8", false_admit_rate=1e-3, rule="best-or-template")
    rng = np.random.default_rng(8)
    faces = _person(rng, 3)
    template = np.sum([f.embedding for f in faces], axis=0)
    template /= np.linalg.norm(template)
    gallery = Gallery(faces, t)
    # a member close to all three photos, nearer the template than any one of them
    member = (template + 0.2 * rng.normal(size=128) / math.sqrt(128)).astype(np.float32)
    member /= np.linalg.norm(member)
    best = max(float(f.embedding @ member) for f in faces)
    out = Decider(None).verify(gallery, member, "alice", look=0)
    assert out.rule == "best-or-template" and out.score == round(float(template @ member), 4) > best
    assert out.threshold == t.claim_template_accept(3, 0.5) >= t.claim_accept(3, 0.5)
    assert out.decision == "accept"
    # per look (the behaviour before): the best face at accept
    old = Decider(None, claim_rate_per="look").verify(gallery, member, "alice", look=0)
    assert (old.rule, old.score, old.threshold) == ("best", round(best, 4), INT8.accept)
    # six photos: past the measured K, the best face at the faces-counted threshold
    many = Gallery(_person(rng, 6, "bob"), t)
    six = Decider(None).verify(many, many.faces[0].embedding, "bob", look=0)
    assert (six.rule, six.threshold) == ("best", t.claim_accept(6, 0.5))


def test_rate_per_is_checked():
    with pytest.raises(ValueError):
        Decider(None, claim_rate_per="person")
