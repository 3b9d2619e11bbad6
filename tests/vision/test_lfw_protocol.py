"""The LFW protocol's arithmetic: pairs file, fold thresholds, TAR at a FAR, calibration."""

from __future__ import annotations

import numpy as np

from edge.bench.lfw import best_threshold, calibrate_thresholds, kfold_accuracy, read_pairs, tar_at_far


def test_pairs_file_gives_6000_pairs_in_10_balanced_folds(faces_dir):
    pairs, fold_of = read_pairs(faces_dir / "lfw" / "pairs.txt")
    assert len(pairs) == 6000
    assert np.bincount(fold_of).tolist() == [600] * 10
    assert sum(same for _, _, same in pairs) == 3000
    assert pairs[0] == ("Abel_Pacheco/Abel_Pacheco_0001.jpg", "Abel_Pacheco/Abel_Pacheco_0004.jpg", True)
    assert all((faces_dir / "lfw" / a).is_file() and (faces_dir / "lfw" / b).is_file() for a, b, _ in pairs[:50])


def test_threshold_separating_the_classes_gives_full_accuracy():
    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8])
    same = np.array([False, False, False, True, True, True])
    t = best_threshold(scores, same)
    assert 0.3 < t < 0.6
    accs, _ = kfold_accuracy(np.tile(scores, 2), np.tile(same, 2), np.repeat([0, 1], 6))
    assert accs == [100.0, 100.0]


def test_tar_at_far_lets_at_most_the_allowed_impostors_through():
    rng = np.random.default_rng(0)
    impostors = rng.normal(0.0, 0.1, 3000)
    genuine = np.concatenate([np.full(90, 0.9), np.full(10, 0.0)])
    scores = np.concatenate([impostors, genuine])
    same = np.concatenate([np.zeros(3000, bool), np.ones(100, bool)])
    tar, t = tar_at_far(scores, same, 1e-3)
    assert np.sum(impostors >= t) <= 3
    assert tar == 90.0


def test_calibration_keeps_far_at_or_below_target():
    rng = np.random.default_rng(1)
    names = [f"P{i // 3}/P{i // 3}_{i % 3 + 1:04d}.jpg" for i in range(600)]
    emb = rng.normal(size=(600, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cal = calibrate_thresholds(emb, names, far_accept=1e-3, far_reject=1e-2)
    assert cal["impostor_pairs"] == 600 * 599 // 2 - 200 * 3
    assert cal["far_at_accept"] <= 1e-3 and cal["far_at_reject"] <= 1e-2
    assert cal["accept"] > cal["reject"]
