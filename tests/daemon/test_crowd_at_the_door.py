"""A crowd at the door: only the person nearest the camera (the frame's largest face) is decided,
and a member's own badge refused on a nearer face is not counted against her when she is in view.

Identify decided every face among the four largest, and any accept granted: a member passing
far behind opened the door for the stranger standing at it. And a member badging her own card
with someone else nearer had the claim answered (refused) by the nearer face, each refusal
counted towards her lockout, at every door of the site. The real frame path (pipeline,
tracker, scorer, settle window) on composite frames of real photos."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge.daemon.claim_lockout import ClaimLockout
from edge.daemon.claims import Claims
from edge.daemon.decide import Decider
from edge.daemon.liveness import LivenessPolicy
from edge.daemon.scoring import FrameScorer
from edge.daemon.settle import SettleWindow
from edge.daemon.tracker import Tracker
from edge.vision import Pipeline
from edge.vision.liveness import Liveness
from tests.daemon.test_claim_nearest import member_behind_a_stranger


class _EveryFaceLive:
    """The liveness model's track rule, every face a live person (composed frames give the real
    model no context to judge)."""

    def track(self, scores):
        return float(np.mean(scores)), "live"


def _rig(models_dir, faces_dir, claims: Claims, liveness_mode: str = "off"):
    pipeline = Pipeline.load(models_dir, precision="int8", threads=1)
    if liveness_mode != "off":
        pipeline.check_liveness = lambda bgr, face: Liveness(0.99, "live", None)  # type: ignore[method-assign]
    gallery, frame = member_behind_a_stranger(pipeline, faces_dir)

    decided: list = []
    decider = Decider(None)

    def settled(c, out) -> None:  # as the daemon's loop (edge.daemon.main): a claim's decision is counted
        decided.append((c.claim, out, c.face.box))
        if c.claim is not None:
            claims.decided(c.claim, out, c.claimed_in_view)

    window = SettleWindow(decider, 0.0, settled)
    tracker = Tracker()
    scorer = FrameScorer(pipeline, tracker, decider, claims, window, lambda: gallery, max_faces=4, min_frames=3,
                         identify=True, groups=["staff"],
                         liveness=LivenessPolicy(liveness_mode, 5, _EveryFaceLive() if liveness_mode != "off" else None,
                                                 None))

    def play(with_stranger: bool) -> None:
        scorer.process(frame(with_stranger), time.perf_counter())
        window.settle_due((t.id for t in tracker.tracks), False)

    return play, decided


def test_a_member_far_behind_is_not_decided_for_the_stranger_at_the_door(models_dir, faces_dir):
    play, decided = _rig(models_dir, faces_dir, Claims(10.0))
    for _ in range(5):  # the stranger at the door, the member passing far behind
        play(True)
    assert all(out.person_id != "madonna" for _, out, _ in decided), decided
    for _ in range(4):  # the stranger has gone: the member is the nearest, and decided
        play(False)
    assert [(out.person_id, str(out.decision)) for _, out, _ in decided if out.person_id] == [("madonna", "accept")]


@pytest.mark.parametrize("liveness, identified_first", [("off", False), ("require", False), ("require", True)])
def test_a_members_own_badge_refused_on_a_nearer_face_is_not_counted_against_her(
        models_dir, faces_dir, liveness, identified_first):
    lockout = ClaimLockout(max_refusals=2, window_s=600, lockout_s=300)
    claims = Claims(10.0, lockout)
    play, decided = _rig(models_dir, faces_dir, claims, liveness)
    if identified_first:  # she walked up alone and was identified (a card+face door asks her card then)
        for _ in range(8):
            play(False)
    for _ in range(3):
        claims.open("madonna")  # she badges her own card, someone else nearer the camera
        for _ in range(8):
            play(True)
    refused = [out for claim, out, _ in decided if claim is not None]
    assert refused and all(str(out.decision) != "accept" for out in refused)  # answered on his face, as ever
    assert lockout.locked("madonna") == 0  # but she is in view: not counted against her
    claims.open("madonna")
    for _ in range(8):  # he steps aside
        play(False)
    answered = [(c.person_id, out.person_id, str(out.decision)) for c, out, _ in decided if c is not None]
    assert answered[-1] == ("madonna", "madonna", "accept"), answered


def test_a_crowd_in_view_costs_landmarks_for_the_faces_handled_only(models_dir, faces_dir):
    """O-Net's three passes ran on every box the detector found before [vision] max_faces cut
    the list: a crowd, a poster or a printed shirt in view (up to 73 faces) tripled the time to
    decide the person at the door. The largest boxes only (two spare), the same faces kept."""
    pipeline = Pipeline.load(models_dir, precision="int8", threads=1)
    photos = sorted((faces_dir / "five_celebrity").glob("*/train_*.jpg"))[:12]
    tiles = [cv2.resize(cv2.imread(str(p)), (160, 160)) for p in photos]
    rows = [np.hstack(tiles[i: i + 4]) for i in range(0, 12, 4)]
    crowd = np.vstack(rows)  # twelve faces of a size
    seen: list[int] = []
    real = pipeline.landmarks.infer

    def counting(bgr, boxes):
        seen.append(len(boxes))
        return real(bgr, boxes)

    pipeline.landmarks.infer = counting  # type: ignore[method-assign]
    every = pipeline.detect(crowd)
    handled = pipeline.detect(crowd, limit=4)
    assert len(every) >= 8 and seen[0] == len(pipeline.detector.infer(crowd)) and seen[1] == 6
    assert [f.box for f in handled[:4]] == [f.box for f in every[:4]]


def test_a_claim_whose_face_leaves_before_it_is_decided_is_answered_and_taken_by_nobody(models_dir, faces_dir):
    """A track that took a claim and left before it could be decided (its liveness not yet
    judged on frames that could be the person) took the claim with it: neither a decision nor
    `no_face_before_timeout` ever came, and the badge reader got no answer. It ends at once,
    unanswered, and no other face may take it (the card's owner walking up after a stranger
    badged with it would have opened the door on a second factor she never presented)."""
    pipeline = Pipeline.load(models_dir, precision="int8", threads=1)
    gallery, frame = member_behind_a_stranger(pipeline, faces_dir)
    claims, decider, tracker = Claims(30.0), Decider(None), Tracker(max_missed=1)
    window = SettleWindow(decider, 5.0, lambda c, out: None)
    scorer = FrameScorer(pipeline, tracker, decider, claims, window, lambda: gallery, max_faces=4, min_frames=3,
                         identify=True, groups=["staff"], liveness=LivenessPolicy("off", 5, None, None))
    scorer.process(frame(True), time.perf_counter())  # the stranger (nearest) and the member behind
    stranger = max(tracker.tracks, key=lambda t: t.box[2] * t.box[3])
    claims.open("madonna")
    stranger.state.claim = claims.take()  # taken, as a track ready to be scored takes it
    for _ in range(3):  # he steps out of view before it is decided; she stays
        scorer.process(frame(False), time.perf_counter())
    assert stranger not in tracker.tracks and not claims.waiting
    ended = claims.expired()
    assert ended is not None and ended.person_id == "madonna"  # answered (no_face_before_timeout) at once
    assert claims.expired() is None
