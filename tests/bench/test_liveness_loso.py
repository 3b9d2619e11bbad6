"""The leave-one-source-out protocol of `bench liveness` on synthetic records: nothing of the
left-out source is ever fitted on, thresholds hold on every training source, fusion fits."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from edge.bench import liveness_loso as loso
from edge.vision import screen_cues


def _records(seed: int = 0, groups=("a", "b", "c", "d"), per: int = 30) -> list[dict]:
    """Per group: one live and one replay sequence; p(live) and the cues drawn from two
    overlapping distributions, shifted per group (each source its own camera)."""
    rng = np.random.default_rng(seed)
    out = []
    for gi, g in enumerate(groups):
        for kind in ("live", "replay"):
            for _ in range(per):
                live = kind == "live"
                p = 1 / (1 + np.exp(-(rng.normal(2.0 if live else -2.0, 1.5) + 0.3 * gi)))
                cues = {n: float(rng.normal(0.0 if live else 1.0, 1.0) + 0.2 * gi) for n in screen_cues.NAMES}
                out.append({"source": g, "group": g, "kind": kind, "sequence": f"{g}/{kind}", "box": [0, 0, 9, 9],
                            "gate": None, "score": {"int8": p}, "context": dict(cues), "face": dict(cues)})
    return out


def test_folds_never_train_on_the_left_out_group():
    recs = _records()
    groups = np.array([r["group"] for r in recs])
    usable = np.ones(len(recs), bool)
    usable[::7] = False
    seen = []
    for g, train, test in loso.folds(groups, usable):
        seen.append(g)
        assert not set(groups[train]) & {g}
        assert set(groups[test]) == {g}
        assert sorted(train + test) == np.flatnonzero(usable).tolist()
    assert seen == ["a", "b", "c", "d"]


@pytest.mark.parametrize("features", [["net"], ["net", *loso.CONTEXT_CUES]])
def test_a_fold_does_not_change_when_its_left_out_group_changes(features):
    """Whatever the left-out group's frames hold, its fold fits the same thresholds: they come
    from the other groups only (a leak would move them)."""
    recs = _records()
    base = loso.loso(recs, features, target=0.05, window=5)
    altered = copy.deepcopy(recs)
    for r in altered:
        if r["group"] == "b":
            r["score"]["int8"] = 0.999 if r["kind"] != "live" else 0.001  # the opposite of the others
            r["context"] = {n: -50.0 for n in r["context"]}
    changed = loso.loso(altered, features, target=0.05, window=5)
    assert changed["groups"]["b"]["frame"]["threshold"] == base["groups"]["b"]["frame"]["threshold"]
    assert changed["groups"]["b"]["track"]["threshold"] == base["groups"]["b"]["track"]["threshold"]
    # ... while it is measured on them: its figures do move.
    assert changed["groups"]["b"]["frame"]["apcer"]["replay"] != base["groups"]["b"]["frame"]["apcer"]["replay"]
    # And the other folds, which did fit on b, see the change.
    assert changed["groups"]["a"]["frame"]["threshold"] != base["groups"]["a"]["frame"]["threshold"]


def test_threshold_keeps_every_training_group_within_target():
    rng = np.random.default_rng(3)
    scores = np.concatenate([rng.normal(0, 1, 200), rng.normal(-3, 1, 50)])
    groups = np.array(["big"] * 200 + ["dark"] * 50)
    t = loso.threshold_worst_source(scores, groups, 0.05)
    for g in ("big", "dark"):
        assert (scores[groups == g] < t).mean() <= 0.05
    # A pooled quantile would have sacrificed the small dark group.
    assert (scores[groups == "dark"] < np.quantile(scores, 0.05)).mean() > 0.05


def test_fusion_learns_which_way_is_live_and_groups_weigh_alike():
    recs = _records(per=60)
    X, ok = loso.matrix(recs, ["net", "context.glare"])
    assert ok.all()
    y = np.array([r["kind"] == "live" for r in recs], float)
    w = loso.balanced_weights(np.array([r["group"] for r in recs]), y)
    assert w.sum() == pytest.approx(len(recs))
    fusion = loso.fit_logistic(X, y, w)
    assert fusion.weights[0] > 0  # higher p(live): more live
    assert fusion.weights[1] < 0  # more of the attack cue: less live
    scores = fusion.logits(X)
    assert scores[y == 1].mean() > scores[y == 0].mean()


def test_tracks_are_windows_of_one_sequence():
    recs = _records(groups=("a",), per=12)
    usable = np.ones(len(recs), bool)
    usable[3] = False
    wins = list(loso.windows(recs, usable, 5))
    assert all(len({recs[i]["sequence"] for i in w}) == 1 for w in wins)
    assert all(len(w) == 5 for w in wins)
    assert 3 not in {i for w in wins for i in w}
    assert len(wins) == 4  # 11 usable live frames give 2 windows, 12 replay frames 2


def _with_motion(recs: list[dict], seed: int = 1, every: int = 3) -> list[dict]:
    """The records with the motion cue on one frame in `every` (a still face gives none): higher
    on live frames, shifted per group like the other cues."""
    rng = np.random.default_rng(seed)
    out = copy.deepcopy(recs)
    for i, r in enumerate(out):
        gi = "abcd".index(r["group"])
        r["motion"] = {} if i % every else {"independence": float(rng.normal(0.6 if r["kind"] == "live" else 0.0, 0.3)
                                                                   + 0.1 * gi)}
    return out


def test_a_missing_motion_value_keeps_the_frame_and_adds_nothing():
    """Fused with the network, a frame without the track cue still gets a verdict (the network's
    share of it); alone, the cue judges only the frames where it has a value."""
    recs = _with_motion(_records())
    _, ok_net = loso.matrix(recs, ["net"])
    X, ok_fused = loso.matrix(recs, ["net", loso.MOTION])
    assert (ok_fused == ok_net).all()
    missing = np.array([not r["motion"] for r in recs])
    assert np.isnan(X[missing, 1]).all() and not np.isnan(X[~missing, 1]).any()
    _, ok_alone = loso.matrix(recs, [loso.MOTION])
    assert (ok_alone == ~missing).all()
    scorer = loso.Scorer("x", ["net", loso.MOTION])
    scorer.fit(recs, 0.05)
    assert scorer.fusion is not None
    one = copy.deepcopy(recs[1])
    assert not one["motion"]
    # Missing: the motion term is zero, the value is the network's term and the bias only.
    f = scorer.fusion
    net_only = (loso.feature_value(one, "net") - f.mean[0]) / f.scale[0] * f.weights[0] + f.bias
    assert scorer.score([one])[0] == pytest.approx(net_only)


def test_the_veto_keeps_every_training_group_within_target_and_never_refuses_without_a_value():
    rng = np.random.default_rng(5)
    scores = rng.normal(1.0, 1.0, 400)
    veto = rng.normal(0.5, 0.3, 400)
    veto[::4] = np.nan
    groups = np.array(["a", "b"] * 200)
    threshold = loso.threshold_worst_source(scores, groups, 0.03)
    t = loso.fit_veto(scores, threshold, veto, groups, 0.05)
    assert np.isfinite(t)
    refused = (scores < threshold) | (veto < t)
    for g in ("a", "b"):
        assert refused[groups == g].mean() <= 0.05
    after = loso.vetoed(scores, veto, t)
    assert np.array_equal(after[np.isnan(veto)], scores[np.isnan(veto)])
    # No room left (the scorer alone already refuses the whole budget): no veto at all.
    assert loso.fit_veto(scores, loso.threshold_worst_source(scores, groups, 0.05), veto, groups, 0.0) == -np.inf


@pytest.mark.parametrize("veto", [None, loso.MOTION])
def test_a_motion_fold_does_not_change_when_its_left_out_group_changes(veto):
    features = ["net", loso.MOTION] if veto is None else ["net"]
    recs = _with_motion(_records())
    base = loso.loso(recs, features, target=0.05, window=5, veto=veto)
    altered = copy.deepcopy(recs)
    for r in altered:
        if r["group"] == "c" and r["motion"]:
            r["motion"]["independence"] = -5.0 if r["kind"] == "live" else 5.0
    changed = loso.loso(altered, features, target=0.05, window=5, veto=veto)
    for level in ("frame", "track"):
        for key in ("threshold", "veto_threshold"):
            assert changed["groups"]["c"][level].get(key, changed["groups"]["c"].get(key)) == \
                base["groups"]["c"][level].get(key, base["groups"]["c"].get(key))
    assert changed["groups"]["c"]["frame"]["bpcer"] > base["groups"]["c"]["frame"]["bpcer"]


def test_without_motion_silences_only_the_handheld_sources():
    recs = _with_motion(_records(groups=("a", "b")))
    for r in recs[:10]:
        r["group"] = "trainingdata_replay"
    out = loso.without_motion(recs)
    assert all(not r["motion"] for r in out[:10])
    assert [r["motion"] for r in out[10:]] == [r["motion"] for r in recs[10:]]
    assert recs[0]["motion"] or recs[3]["motion"]  # the input is left as it was


def test_a_source_of_a_frame_or_two_does_not_set_the_threshold_alone():
    """A tight-crop source with a single live frame given a verdict was its own "5 %" cut: its
    one frame set the model's threshold in 9 of 10 folds. Sources with fewer than MIN_FRAMES are
    pooled; the large ones still hold their target."""
    rng = np.random.default_rng(7)
    scores = np.concatenate([rng.normal(0, 1, 300), [-6.0], [-5.5, 0.3]])
    groups = np.array(["webcam"] * 300 + ["one_crop"] + ["two_crops"] * 2)
    t = loso.threshold_worst_source(scores, groups, 0.05)
    assert t > -5.5  # neither tiny source's lowest frame
    assert (scores[groups == "webcam"] < t).mean() <= 0.05
