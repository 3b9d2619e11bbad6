"""The condition a face was seen in: bands, the door's rule, and the thresholds it moves (issue 25)."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.conditions import (
    FACE_THE_CAMERA,
    STEP_CLOSER,
    Condition,
    all_bands,
    band_of,
    bands,
    judge,
)
from edge.core.domain import Decision
from edge.core.matcher import Enrolled, Gallery, thresholds_for
from edge.daemon.decide import Decider


def test_a_value_falls_in_the_band_whose_lower_edge_it_reaches():
    edges = (0.0, 64.0, 96.0)
    assert band_of(40.0, edges) == "0-64"
    assert band_of(63.99, edges) == "0-64"
    assert band_of(64.0, edges) == "64-96"
    assert band_of(95.9, edges) == "64-96"
    assert band_of(96.0, edges) == "96+"
    assert band_of(1000.0, edges) == "96+"


def test_pose_band_follows_the_larger_of_yaw_and_pitch_either_side():
    assert bands(Condition(100, yaw=-20, pitch=3, sharpness=300))["pose"] == "15-25"
    assert bands(Condition(100, yaw=2, pitch=-30, sharpness=300))["pose"] == "25+"
    assert bands(Condition(100, yaw=5, pitch=5, sharpness=300)) == {"size": "96+", "pose": "0-15", "sharpness": "150+"}
    # every label bands() can give is listed, so a report misses no band
    listed = all_bands()
    for size in (10, 70, 200):
        for turn in (0, 20, 40):
            for sharp in (10, 100, 500):
                for measure, label in bands(Condition(size, turn, 0, sharp)).items():
                    assert label in listed[measure]


def test_the_worst_band_of_the_face_sets_the_margin():
    margins = {"size:0-64": 0.03, "pose:15-25": 0.05, "sharpness:0-50": 0.01}
    small = judge(Condition(50, 0, 0, 300), margins, {})
    assert (small.withhold, small.margin, small.band) == (None, 0.03, "size:0-64")
    small_turned = judge(Condition(50, 18, 0, 300), margins, {})
    assert (small_turned.margin, small_turned.band) == (0.05, "pose:15-25")
    large_frontal = judge(Condition(120, 2, 2, 300), margins, {})
    assert (large_frontal.margin, large_frontal.band) == (0.0, "")


def test_a_margin_never_lowers_a_threshold():
    judged = judge(Condition(50, 0, 0, 300), {"size:0-64": -0.2}, {})
    assert judged.margin == 0.0
    gallery = Gallery([Enrolled("a", "a#0", np.eye(8)[0])], thresholds_for("int8", false_admit_rate=1e-3))
    today = gallery.identify(np.eye(8)[0]).threshold
    assert gallery.identify(np.eye(8)[0], raise_by=-0.2).threshold == today
    assert gallery.identify(np.eye(8)[0], raise_by=0.05).threshold == pytest.approx(today + 0.05)


def test_beyond_the_limits_the_door_withholds_and_says_why():
    limits = {"min_size": 48.0, "max_turn": 30.0}
    assert judge(Condition(40, 0, 0, 300), {}, limits).withhold == STEP_CLOSER
    assert judge(Condition(100, 35, 0, 300), {}, limits).withhold == FACE_THE_CAMERA
    assert judge(Condition(100, 0, -31, 300), {}, limits).withhold == FACE_THE_CAMERA
    assert judge(Condition(48, 30, 0, 300), {}, limits).withhold is None
    assert judge(None, {"size:0-64": 0.1}, limits).margin == 0.0  # no face measured: today's rule


def _door(margins: dict, limits: dict):
    """A one-person gallery and a probe at cosine 0.47 from her: above today's 1:1 accept
    (0.4286) and, alone in the gallery, above identify's derived threshold."""
    from dataclasses import replace

    t = replace(thresholds_for("int8", false_admit_rate=1e-3), band_margins=tuple(margins.items()),
                limits=tuple(limits.items()))
    face = np.eye(8)[0].astype(np.float32)
    probe = 0.47 * face + np.sqrt(1 - 0.47 ** 2) * np.eye(8)[1]
    return Gallery([Enrolled("ann", "ann#0", face, ("door",))], t), probe


def test_a_small_face_is_decided_at_the_raised_threshold_and_the_outcome_says_so():
    gallery, probe = _door({"size:0-64": 0.06}, {})
    decider = Decider(None)
    large = Condition(120, 0, 0, 300)
    small = Condition(50, 0, 0, 300)
    assert decider.verify(gallery, probe, "ann", condition=large).decision is Decision.ACCEPT
    out = decider.verify(gallery, probe, "ann", condition=small)
    assert out.decision is not Decision.ACCEPT
    assert out.threshold == pytest.approx(gallery.thresholds.accept + 0.06)
    assert out.condition.as_dict() == {"bands": bands(small), "margin": 0.06, "band": "size:0-64", "withheld": None}
    ident = decider.identify(gallery, probe, ["door"], condition=large)
    assert ident.decision is Decision.ACCEPT
    ident_small = decider.identify(gallery, probe, ["door"], condition=small)
    assert ident_small.decision is not Decision.ACCEPT
    assert ident_small.threshold == pytest.approx(ident.threshold + 0.06)


def test_a_withheld_face_is_never_admitted_and_gives_no_score():
    gallery, probe = _door({}, {"min_size": 64.0, "max_turn": 25.0})
    decider = Decider(None, offline="allow")  # even a door that lets uncertain faces in when offline
    for cond, reason in ((Condition(50, 0, 0, 300), STEP_CLOSER), (Condition(120, 30, 0, 300), FACE_THE_CAMERA)):
        for out in (decider.verify(gallery, probe, "ann", condition=cond),
                    decider.identify(gallery, probe, ["door"], condition=cond)):
            assert out.decision is Decision.UNKNOWN
            assert out.reason == reason and out.condition.withhold == reason
            assert out.score is None and out.candidates == []
            assert decider.settle(out, lambda: b"").decision is Decision.UNKNOWN


def test_the_shipped_margins_and_limits_reach_every_pack_and_are_never_negative():
    from edge.core.false_admit import BAND_MARGINS, DOOR_LIMITS

    for pack in ("int8", "fp32", "int8-lite", "fp32-lite", "int8-mirror"):
        t = thresholds_for(pack, false_admit_rate=1e-3)
        assert dict(t.band_margins) == (BAND_MARGINS.get(pack) or BAND_MARGINS["int8"])
        assert dict(t.limits) == DOOR_LIMITS
        assert all(v >= 0 for v in dict(t.band_margins).values())
        # every shipped band exists
        listed = {f"{m}:{b}" for m, bs in all_bands().items() for b in bs}
        assert set(dict(t.band_margins)) <= listed
    assert thresholds_for("int8", conditions=False).band_margins == ()
