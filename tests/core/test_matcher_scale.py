"""Gallery.identify sorts only the highest scores: its ranking must equal the brute-force one
(best face per person, persons by best score, ties by row) on random galleries full of ties,
uneven face counts per person, overlapping groups, and top_k beyond the persons."""

from __future__ import annotations

import numpy as np
import pytest

from edge.core.matcher import Enrolled, Gallery


def brute_force(gallery: Gallery, embedding, group_ids, k):
    """Every face's score (the gallery's own arithmetic: ties stay ties), then a plain loop."""
    scores = gallery._matrix @ gallery._unit(embedding)
    best: dict[str, tuple[float, int]] = {}
    for row, face in enumerate(gallery.faces):
        if group_ids is not None and not set(group_ids) & set(face.group_ids):
            continue
        score = float(scores[row])
        if face.person_id not in best or score > best[face.person_id][0]:
            best[face.person_id] = (score, row)
    ranked = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[1][1]))
    return [(pid, gallery.faces[row].face_id) for pid, (_, row) in ranked[:k]]


@pytest.mark.parametrize("seed", range(6))
def test_identify_ranks_exactly_like_brute_force(seed):
    rng = np.random.default_rng(seed)
    # few distinct vectors: many exact ties between faces and persons
    palette = rng.normal(size=(12, 8)).astype(np.float32)
    faces = []
    for p in range(60):
        for f in range(int(rng.integers(1, 8))):
            groups = tuple(g for g in ("a", "b", "c") if rng.random() < 0.5) or ("a",)
            faces.append(Enrolled(f"p{p}", f"p{p}-f{f}", palette[rng.integers(len(palette))], groups))
    gallery = Gallery(faces)
    for _ in range(20):
        probe = palette[rng.integers(len(palette))] + rng.normal(scale=0.3, size=8).astype(np.float32)
        for groups in (None, ["a"], ["b", "c"], ["a", "b", "c", "missing"]):
            for k in (1, 5, 100):
                got = [(c.person_id, c.face_id) for c in gallery.identify(probe, groups, top_k=k).candidates]
                want = brute_force(gallery, probe, groups, k)
                assert got == want
