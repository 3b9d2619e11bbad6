"""A hub on the int8-mirror pack (issue 25): it serves that pack alone, and an edge on int8 (the
same model files, embedding one pass) is told its fingerprint is not stored instead of comparing
its one-pass embeddings with the hub's mirror-averaged ones. Real hub on loopback, real models
on five_celebrity photos."""

from __future__ import annotations

import pytest

from edge.daemon.cache import EdgeCache
from edge.daemon.sync import Syncer
from edge.modelpack.share import PullError, pull
from tests.support.hub import hub_with_five_enrolled


@pytest.fixture(scope="module")
def hub(tmp_path_factory, faces_dir, models_dir):
    mirror = {"precision": "int8-mirror"}
    with hub_with_five_enrolled(tmp_path_factory.mktemp("mirrorhub"), faces_dir, vision=mirror) as hub:
        client = hub.client(timeout=30.0, retries=0)
        yield hub, client
        client.close()


@pytest.fixture(scope="module")
def pipes(models_dir):
    from edge.vision import Pipeline

    return Pipeline.load(models_dir, "int8", threads=1), Pipeline.load(models_dir, "int8-mirror", threads=1)


def test_the_hub_serves_the_mirror_pack_alone_under_its_own_fingerprints(hub, pipes, tmp_path):
    _, client = hub
    plain, mirror = pipes
    packs = client.packs()["packs"]
    assert [(p["name"], p["embedder_fingerprint"]) for p in packs] == [("int8-mirror", mirror.fingerprint)]
    # The files are int8's, but an edge asking for int8 is not handed them as if they were.
    with pytest.raises(PullError, match="serves no pack 'int8'"):
        pull(client, tmp_path / "int8", "int8", log=lambda m: None)
    assert not (tmp_path / "int8").exists()


def test_a_listing_stripped_of_its_mirror_embedding_is_refused(hub, tmp_path):
    _, client = hub

    class StripsTheEmbedding:  # a hub (or a man in the middle) passing the mirror pack off as one-pass
        def packs(self):
            listed = client.packs()
            for p in listed["packs"]:
                p["index"]["packs"][p["name"]].pop("embedding", None)
            return listed

        def packfile(self, pack, name, offset=0):
            return client.packfile(pack, name, offset)

    with pytest.raises(PullError, match="do not make the listed fingerprint"):
        pull(StripsTheEmbedding(), tmp_path / "models", "int8-mirror", log=lambda m: None)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_an_int8_edge_gets_a_fingerprint_mismatch_and_compares_nothing(hub, pipes, tmp_path):
    _, client = hub
    plain, mirror = pipes
    galleries: list = []
    cache = EdgeCache(tmp_path / "int8.db")
    state = Syncer(client, cache, plain.fingerprint, on_gallery=galleries.append).sync_once()
    assert state["status"] == "fingerprint_mismatch"
    assert plain.fingerprint in state["last_error"] and mirror.fingerprint in state["last_error"]
    assert cache.counts() == {"persons": 0, "faces": 0} and not galleries


def test_an_edge_on_the_mirror_pack_syncs_and_identifies_the_enrolled_person(hub, pipes, faces_dir, tmp_path):
    from edge.core.matcher import Decision, thresholds_for
    from edge.vision import load_image

    _, client = hub
    _, mirror = pipes
    galleries: list = []
    cache = EdgeCache(tmp_path / "mirror.db")
    state = Syncer(client, cache, mirror.fingerprint, thresholds=thresholds_for("int8-mirror"),
                   on_gallery=galleries.append).sync_once()
    assert state["status"] == "ok" and cache.counts()["faces"] >= 5
    probe = mirror.analyze(load_image(faces_dir / "five_celebrity/Mindy_Kaling/val_1.jpg"), max_faces=1)[0]
    best = galleries[-1].identify(probe.embedding).candidates[0]
    assert best.person_id == "mindy_kaling"
    assert thresholds_for("int8-mirror").decide(best.score) is Decision.ACCEPT
