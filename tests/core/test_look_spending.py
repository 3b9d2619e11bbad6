"""`[identify] rate_per = "approach"`: a track's looks share the false-admit rate (issue 25's
per-look limit). A stranger's frames are nearly independent chances at the threshold (bench door
--tracks), so a stranger who shows the camera many frames must not get the whole rate on each."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.false_admit import TEMPLATE_RULE, look_share
from edge.core.matcher import Decision, Enrolled, Gallery, thresholds_for
from edge.daemon.decide import Decider
from edge.daemon.evidence import decide_approach


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v)).astype(np.float32)


def _gallery(rule: str, rng: np.random.Generator, persons: int = 100, photos: int = 3) -> Gallery:
    faces = [Enrolled(f"p{p}", f"p{p}#{f}", _unit(rng.standard_normal(128)), ("door",))
             for p in range(persons) for f in range(photos)]
    return Gallery(faces, thresholds_for("int8", false_admit_rate=1e-3, rule=rule), version="t")


def _scoring(target: np.ndarray, score: float, rng: np.random.Generator) -> np.ndarray:
    """A probe whose cosine with `target` is exactly `score` (and near 0 with random others)."""
    other = rng.standard_normal(target.size)
    other -= (other @ target) * target
    return _unit(score * target + np.sqrt(1 - score ** 2) * _unit(other))


def test_the_shares_halve_and_never_add_up_to_the_whole_rate() -> None:
    shares = [look_share(i) for i in range(40)]
    assert shares[:3] == [0.5, 0.25, 0.125]
    assert sum(shares) < 1.0
    with pytest.raises(ValueError):
        look_share(-1)


@pytest.mark.parametrize("rule", ["best", TEMPLATE_RULE])
def test_a_look_spending_less_of_the_rate_meets_a_stricter_threshold(rule) -> None:
    gallery = _gallery(rule, np.random.default_rng(1))
    full, half, eighth = (gallery.identify_threshold(share=s) for s in (1.0, 0.5, 0.125))
    assert full < half < eighth <= 1.0
    probe = _scoring(_unit(gallery.faces[0].embedding), (full + half) / 2, np.random.default_rng(2))
    assert gallery.identify(probe).decision is Decision.ACCEPT
    spent = gallery.identify(probe, share=0.5)
    assert spent.decision is not Decision.ACCEPT and spent.threshold == half
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError):
            gallery.identify(probe, share=bad)


@pytest.mark.parametrize("rule", ["best", TEMPLATE_RULE])
def test_a_stranger_showing_many_frames_is_not_given_the_whole_rate_on_each(rule) -> None:
    """The attack: every frame of the track scores just over the per-look threshold against
    someone (frames of a face that happens to be close to an enrolled person, shown again and
    again). Per look it is admitted on the first frame; per approach on none of ten."""
    rng = np.random.default_rng(3)
    gallery = _gallery(rule, rng)
    full, half = gallery.identify_threshold(share=1.0), gallery.identify_threshold(share=0.5)
    target = _unit(gallery.faces[3].embedding)
    frames = [_scoring(target, full + (half - full) * f, rng) for f in np.linspace(0.1, 0.9, 10)]

    def approach(decider: Decider):
        looks = iter(range(len(frames)))
        return decide_approach(lambda v: decider.identify(gallery, v, ["door"], look=next(looks)), frames)

    per_look = approach(Decider(None, rate_per="look"))
    assert per_look.decision is Decision.ACCEPT and per_look.person_id == "p1"
    per_approach = approach(Decider(None, rate_per="approach"))
    assert per_approach.decision is not Decision.ACCEPT


def test_the_outcome_says_which_look_and_which_share_decided() -> None:
    rng = np.random.default_rng(4)
    gallery = _gallery(TEMPLATE_RULE, rng)
    decider = Decider(None)
    assert decider.rate_per == "approach"
    probe = _unit(rng.standard_normal(128))
    single = decider.identify(gallery, probe, ["door"])  # an API image, not a track: all of the rate
    assert (single.look, single.rate_share, single.threshold) == (None, None, gallery.identify_threshold())
    for look in (0, 1, 2):
        out = decider.identify(gallery, probe, ["door"], look=look)
        assert (out.look, out.rate_share) == (look + 1, 0.5 ** (look + 1))
        assert out.threshold == gallery.identify_threshold(share=0.5 ** (look + 1))
    every = Decider(None, rate_per="look").identify(gallery, probe, ["door"], look=4)
    assert (every.look, every.rate_share, every.threshold) == (5, 1.0, gallery.identify_threshold())
    with pytest.raises(ValueError):
        Decider(None, rate_per="track")
