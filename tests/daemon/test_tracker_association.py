"""The tracker: one track per face over consecutive frames; someone else gets a new track."""

from __future__ import annotations

import numpy as np

from edge.daemon.tracker import Tracker


def _unit(seed):
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


def test_a_face_moving_slowly_keeps_its_track():
    t = Tracker()
    ids = [t.update([(100 + 5 * i, 100, 80, 80)])[0].id for i in range(10)]
    assert len(set(ids)) == 1


def test_two_faces_keep_separate_tracks():
    t = Tracker()
    a1, b1 = t.update([(0, 0, 50, 50), (300, 0, 50, 50)])
    b2, a2 = t.update([(305, 2, 50, 50), (3, 1, 50, 50)])
    assert a1.id == a2.id and b1.id == b2.id and a1.id != b1.id


def test_a_track_survives_a_few_missed_frames_then_ends():
    t = Tracker(max_missed=2)
    first = t.update([(10, 10, 60, 60)])[0]
    t.miss_all()
    t.miss_all()
    assert t.update([(12, 10, 60, 60)])[0].id == first.id
    for _ in range(3):
        t.miss_all()
    assert t.update([(12, 10, 60, 60)])[0].id != first.id


def test_a_different_person_in_the_same_place_starts_a_new_track():
    t = Tracker()
    a = t.update([(10, 10, 60, 60)], [_unit(1)])[0]
    same = t.update([(11, 10, 60, 60)], [_unit(1) + 0.05 * _unit(3)])[0]
    other = t.update([(11, 10, 60, 60)], [_unit(2)])[0]
    assert same.id == a.id and other.id != a.id
