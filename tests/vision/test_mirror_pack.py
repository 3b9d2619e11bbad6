"""The int8-mirror pack: the int8 files, each crop embedded with its horizontal mirror (issue 25)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge.core.matcher import cosine
from edge.vision import Pipeline, load_image
from edge.vision.packs import ModelPackError


@pytest.fixture(scope="module")
def pipes(models_dir):
    return Pipeline.load(models_dir, "int8", threads=1), Pipeline.load(models_dir, "int8-mirror", threads=1)


def _aligned(pipe, path) -> np.ndarray:
    faces = pipe.detect(load_image(path))
    assert faces, path
    return faces[0].aligned


def test_its_embedding_is_the_normalised_mean_of_the_crop_and_its_mirror(pipes, faces_dir):
    plain, mirror = pipes
    for path in sorted((faces_dir / "five_celebrity/Madonna").glob("val_*.jpg"))[:3]:
        crop = _aligned(plain, path)
        # The int8 pack's two embeddings, computed here by the one-pass pack.
        a = plain.embedder.infer(crop)
        b = plain.embedder.infer(np.ascontiguousarray(crop[:, ::-1]))
        expected = (a + b) / np.linalg.norm(a + b)
        got = mirror.embedder.infer(crop)
        assert got.dtype == np.float32 and abs(float(np.linalg.norm(got)) - 1.0) < 1e-5
        np.testing.assert_allclose(got, expected, atol=1e-6)
        # A crop that is not its own mirror: the mean is another vector than either half.
        assert cosine(a, b) < 0.999 and not np.allclose(got, a, atol=1e-3)


def test_the_whole_pipeline_embeds_that_way_and_the_person_still_matches(pipes, faces_dir):
    plain, mirror = pipes
    enrolled, probe = (load_image(faces_dir / f"five_celebrity/Ben_Afflek/{n}.jpg") for n in ("train_2", "val_1"))
    stranger = load_image(faces_dir / "five_celebrity/Madonna/val_1.jpg")
    face = mirror.analyze(probe, max_faces=1)[0]
    np.testing.assert_allclose(face.embedding, mirror.embedder.infer(face.aligned), atol=1e-6)
    same = cosine(mirror.analyze(enrolled, max_faces=1)[0].embedding, face.embedding)
    other = cosine(mirror.analyze(stranger, max_faces=1)[0].embedding, face.embedding)
    assert same > 0.5 > 0.3 > other


def test_it_is_a_pack_of_its_own_whose_fingerprints_differ_from_int8s(pipes):
    plain, mirror = pipes
    assert mirror.precision == "int8-mirror" and mirror.embedder.mirror and not plain.embedder.mirror
    # The same model files (their fingerprints per role) ...
    assert mirror.fingerprints == plain.fingerprints
    # ... but another embedder fingerprint: what the hub stores, syncs and serves embeddings by.
    assert mirror.fingerprint != plain.fingerprint


def test_a_pack_that_embeds_in_a_way_this_code_does_not_know_is_refused(models_dir, tmp_path):
    meta = json.loads((models_dir / "models.json").read_text())
    for name in meta["models"]:
        (tmp_path / name).symlink_to(models_dir / name)
    meta["packs"]["int8-mirror"]["embedding"] = "mirror-max"
    (tmp_path / "models.json").write_text(json.dumps(meta))
    with pytest.raises(ModelPackError, match="mirror-max"):
        Pipeline.load(tmp_path, "int8-mirror", threads=1)
