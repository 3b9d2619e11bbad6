"""Identify's accept threshold follows the gallery (edge.core.false_admit): strangers stay out
whatever the number of persons enrolled.

The growth test runs the int8 pipeline on real LFW photos (embeddings kept under
~/.cache/edge-verifier between runs, keyed by the models' fingerprints and the photos)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.core.false_admit import IMPOSTOR_TAILS, identify_accept, per_pair_far, score_at_far
from edge.core.matcher import CALIBRATED_THRESHOLDS, Enrolled, Gallery, confidence, thresholds_for
from edge.vision.packs import PACKS


def test_per_pair_far_keeps_the_whole_search_at_the_rate():
    for faces in (1, 10, 300, 1200, 100_000):
        p = per_pair_far(1e-3, faces)
        assert 1 - (1 - p) ** faces == pytest.approx(1e-3, rel=1e-6)
    assert per_pair_far(1e-3, 300) == pytest.approx(1e-3 / 300, rel=1e-3)


def test_every_pack_ships_a_tail_consistent_with_its_accept_threshold():
    for pack in PACKS:
        tail = IMPOSTOR_TAILS[pack]
        fars = [f for f, _ in tail]
        scores = [s for _, s in tail]
        assert fars == sorted(fars, reverse=True) and scores == sorted(scores)
        # The tail and the verify threshold come from the same pairs: FAR 1e-4 lands on accept.
        assert score_at_far(tail, 1e-4) == pytest.approx(CALIBRATED_THRESHOLDS[pack].accept, abs=0.002)


def test_interpolation_is_linear_in_log_far_and_extends_the_last_segment():
    tail = ((1e-3, 0.30), (1e-4, 0.40), (1e-5, 0.50))
    assert score_at_far(tail, 1e-4) == pytest.approx(0.40)
    assert score_at_far(tail, math.sqrt(1e-4 * 1e-5)) == pytest.approx(0.45)
    assert score_at_far(tail, 1e-6) == pytest.approx(0.60)  # beyond the table: last slope


def test_threshold_rises_with_the_faces_searched_and_never_under_verify():
    accept = CALIBRATED_THRESHOLDS["int8"].accept
    values = [identify_accept("int8", 1e-3, f, accept) for f in (1, 3, 30, 300, 1200, 6000)]
    assert values == sorted(values) and values[-1] > values[0]
    assert min(values) >= accept
    # A stricter rate gives a stricter threshold for the same gallery.
    assert identify_accept("int8", 1e-4, 300, accept) > identify_accept("int8", 1e-3, 300, accept)


def test_gallery_applies_the_threshold_of_the_groups_searched():
    rng = np.random.default_rng(0)
    t = thresholds_for("int8", false_admit_rate=1e-3)
    faces = [Enrolled(f"p{i}", f"f{i}", rng.normal(size=128), ("big",) if i >= 10 else ("small", "big"))
             for i in range(400)]
    gallery = Gallery(faces, t)
    small, big = gallery.identify_threshold(["small"]), gallery.identify_threshold(["big"])
    assert small == t.identify_accept(10) < big == t.identify_accept(400)
    res = gallery.identify(faces[3].embedding, ["small"])
    assert res.threshold == small and res.decision.value == "accept"
    # Without a rate (the hub's 1:1 thresholds), identify accepts at the verify threshold.
    assert Gallery(faces, CALIBRATED_THRESHOLDS["int8"]).identify(faces[3].embedding).threshold == \
        CALIBRATED_THRESHOLDS["int8"].accept


# --- real photos ----------------------------------------------------------------------------

ENROLLED = 400
STRANGERS = 340


@pytest.fixture(scope="module")
def door_photos(faces_dir, models_dir):
    """Embeddings of: one photo each of 400 LFW persons (enrolled), another photo of ten of
    them (members at the door), and 340 persons with a single photo (strangers)."""
    from edge.bench.lfw import lfw_embeddings
    from edge.vision.pipeline import Pipeline

    data = faces_dir / "lfw"
    by_person: dict[str, list[str]] = {}
    for p in sorted(data.glob("*/*.jpg")):
        by_person.setdefault(p.parent.name, []).append(f"{p.parent.name}/{p.name}")
    multi = [p for p, photos in by_person.items() if len(photos) >= 2][::3][:ENROLLED]
    single = [p for p, photos in by_person.items() if len(photos) == 1][::8][:STRANGERS]
    assert len(multi) == ENROLLED and len(single) == STRANGERS
    names = [by_person[p][0] for p in multi] + [by_person[p][1] for p in multi[:10]] + \
            [by_person[p][0] for p in single]
    pipe = Pipeline.load(models_dir, precision="int8", threads=2)
    _, emb, _ = lfw_embeddings(pipe, data, 2, names=names)
    stranger_photos = [data / by_person[p][0] for p in single]
    return multi, emb[:ENROLLED], emb[ENROLLED:ENROLLED + 10], emb[ENROLLED + 10:], stranger_photos


def test_a_growing_gallery_raises_the_threshold_and_keeps_the_strangers_out(door_photos):
    persons, enrolled, members, strangers, _ = door_photos
    derived = thresholds_for("int8", false_admit_rate=1e-3)
    fixed = CALIBRATED_THRESHOLDS["int8"]  # the old policy: one threshold for any gallery
    thresholds, admitted_fixed = [], []
    for n in (10, 25, 100, 400):
        faces = [Enrolled(p, f"{p}#0", e) for p, e in zip(persons[:n], enrolled[:n])]
        gallery, old = Gallery(faces, derived), Gallery(faces, fixed)
        thresholds.append(gallery.identify_threshold())
        admitted = [i for i, s in enumerate(strangers) if gallery.identify(s).decision.value == "accept"]
        assert admitted == [], f"{n} persons enrolled: strangers {admitted} admitted"
        admitted_fixed.append(sum(old.identify(s).decision.value == "accept" for s in strangers))
        # The members at the door are still let in, as themselves.
        for p, m in zip(persons[:10], members):
            res = gallery.identify(m)
            assert res.candidates[0].person_id == p
    assert thresholds == sorted(thresholds) and thresholds[-1] > thresholds[0] + 0.05
    # The same strangers got in at the fixed threshold once the gallery was large: the defect.
    assert admitted_fixed[-1] > admitted_fixed[0] and admitted_fixed[-1] >= 2, admitted_fixed


def test_an_uncertain_stranger_is_not_admitted_by_the_hub_fallback(door_photos, faces_dir, hub_server):
    """A stranger the derived threshold holds back at a 400-person door, but who clears the
    1:1 threshold against the best candidate: the hub's verify of that candidate (same
    network, same photo) says yes. The daemon's shipped policy does not ask it; asked
    (`[identify] cloud_fallback = true`), its yes admits only at the confidence of the edge's
    own threshold, which this stranger's does not reach."""
    from edge.daemon.decide import Decider

    persons, enrolled, _, strangers, stranger_photos = door_photos
    gallery = Gallery([Enrolled(f"door-{p}", f"{p}#0", e, ("door",)) for p, e in zip(persons, enrolled)],
                      thresholds_for("int8", false_admit_rate=1e-3))
    fixed = CALIBRATED_THRESHOLDS["int8"].accept
    uncertain = [i for i, s in enumerate(strangers)
                 if gallery.identify(s).candidates[0].score >= fixed
                 and gallery.identify(s).decision.value != "accept"]
    assert uncertain, "the fixed set has a stranger between the 1:1 and the derived threshold"
    stranger = strangers[uncertain[0]]
    best = gallery.identify(stranger).candidates[0].person_id
    person = best.removeprefix("door-")
    data = faces_dir / "lfw"
    photo = stranger_photos[uncertain[0]].read_bytes()
    with hub_server.client() as client:
        try:
            client.newperson(best, ["door"], sorted((data / person).glob("*.jpg"))[0].read_bytes())
        except Exception as exc:  # enrolled by an earlier run of this session
            assert getattr(exc, "code", None) == -1302, exc
        shipped = Decider(client, offline="deny").identify(gallery, stranger, ["door"], lambda: photo)
        assert (shipped.decision, shipped.source, shipped.cloud) == ("unknown", "local", None)
        assert shipped.threshold == gallery.identify_threshold(["door"]) > shipped.score >= fixed
        # Asking the hub: it re-rolls the same network near the threshold and says yes at the
        # pack's accept (the old policy let them in on that yes), but not at the edge's threshold.
        asked = Decider(client, offline="deny", identify_fallback=True).identify(
            gallery, stranger, ["door"], lambda: photo)
        assert asked.source == "cloud" and asked.cloud is not None and asked.cloud.ismatch, asked.cloud
        assert asked.cloud.confidence < asked.cloud_confidence_needed == confidence(asked.threshold,
                                                                                      gallery.thresholds)
        assert asked.decision == "unknown", asked.cloud


def test_bench_door_counts_and_draws_a_door_of_real_embeddings(door_photos, tmp_path):
    """bench door's own steps on the photos above: ten members (two photos each: one enrolled,
    one at the door), everyone else a stranger; the decision code, the counts, the DET plot."""
    from edge.bench.door import det_curve, draw_door, fnir_at_fpir, plot_det, run_door

    persons, enrolled, members, strangers, _ = door_photos
    emb = np.concatenate([enrolled, members, strangers])
    by_person = {p: np.array([i, len(enrolled) + i]) if i < 10 else np.array([i]) for i, p in enumerate(persons)}
    by_person |= {f"stranger-{i}": np.array([len(enrolled) + 10 + i]) for i in range(len(strangers))}
    e, mated, non_mated = draw_door(np.random.default_rng(0), by_person, 10, 1)
    assert sorted(e) == sorted(persons[:10]) and len(mated) == 10 and len(non_mated) == 390 + STRANGERS
    r = run_door(emb, e, mated, non_mated, thresholds_for("int8", false_admit_rate=1e-3), "off", "best", None)
    assert r["threshold"] == CALIBRATED_THRESHOLDS["int8"].accept  # 10 faces: never under 1:1
    assert r["misidentified"] == 0 and r["misses"] <= 1 and r["false_admits"] <= 1
    # The hub fallback (the old policy) can only admit more strangers.
    hub = run_door(emb, e, mated, non_mated, thresholds_for("int8", false_admit_rate=1e-3), "hub", "best", None)
    assert hub["false_admits"] >= r["false_admits"] and hub["misses"] <= r["misses"]
    assert fnir_at_fpir(r["_nm"], r["_mated"], 1e-2) <= 0.1
    assert fnir_at_fpir(r["_nm"], r["_mated"], 1e-4) is None  # 730 strangers cannot measure 1e-4
    plot_det({("int8", 10, 1): det_curve(r["_nm"], r["_mated"])}, tmp_path / "det.png",
             {"false_admit_rate": 1e-3, "galleries": 1})
    assert (tmp_path / "det.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
