"""Credentials set on a real hub reach the edge cache by sync (in the page's transaction), a
change replaces them, a removal or the person's deletion takes them away; the cache keeps them
offline; a malformed credential rolls the page back; an old cache re-syncs to get them."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from edge.core.credentials import Credential
from edge.daemon.cache import CacheError, EdgeCache
from edge.daemon.sync import Syncer
from edge.hub.store import FaceRecord, Limits
from tests.support.hub import start_hub

CARD = {"format": "h10301", "facility": 42, "number": 12345}
LONG = {"format": "h10304", "facility": 31337, "number": 424242}


@pytest.fixture(scope="module")
def hub(tmp_path_factory, models_dir):
    with start_hub(tmp_path_factory.mktemp("credhub")) as hub:
        client = hub.client(timeout=30.0, retries=0)
        service = hub.app.state.service
        fingerprint = service.vision.primary.fingerprint
        vec = np.random.default_rng(0).standard_normal(128).astype(np.float32)
        for pid in ("ann", "ben"):  # persons straight into the store: no photo needed for cards
            service.store.create_person(hub.appid, pid, ["staff"], pid.title(), "", FaceRecord(
                face_id=service.store.new_face_id(), person_id=pid, box=(0, 0, 10, 10),
                embeddings={fingerprint: vec / np.linalg.norm(vec)}), Limits())
        yield hub, client, fingerprint
        client.close()


def test_credentials_reach_the_cache_and_leave_it(hub, tmp_path) -> None:
    hub_server, client, fingerprint = hub
    cache = EdgeCache(tmp_path / "cache.db")
    syncer = Syncer(client, cache, fingerprint, page_size=2)
    client.setcredentials("ann", [CARD, LONG])
    assert syncer.sync_once()["status"] == "ok"
    assert cache.credentials_of("ann") == (Credential.from_json(CARD), Credential.from_json(LONG))
    assert cache.credentials_of("ben") == () and cache.credentials_of("nobody") == ()

    client.setcredentials("ann", [LONG])
    client.setcredentials("ben", [CARD])  # the card moved from ann to ben
    assert syncer.sync_once()["status"] == "ok"
    assert cache.credentials_of("ann") == (Credential.from_json(LONG),)
    assert cache.credentials_of("ben") == (Credential.from_json(CARD),)

    client.setcredentials("ann", [])
    assert syncer.sync_once()["status"] == "ok"
    assert cache.credentials_of("ann") == ()

    # the edge keeps them with the hub gone
    cache.close()
    offline = EdgeCache(tmp_path / "cache.db")
    assert offline.credentials_of("ben") == (Credential.from_json(CARD),)

    client.delperson("ben")
    assert Syncer(client, offline, fingerprint).sync_once()["status"] == "ok"
    assert offline.credentials_of("ben") == ()
    assert "ben" not in offline.gallery().person_ids
    offline.close()


def test_a_malformed_credential_rolls_the_page_back(tmp_path) -> None:
    cache = EdgeCache(tmp_path / "c.db")
    good = {"seq": 1, "type": "person", "person_id": "p1", "person_name": "", "tag": "", "group_ids": ["g"],
            "credentials": [CARD]}
    bad = {"seq": 2, "type": "person", "person_id": "p2", "person_name": "", "tag": "", "group_ids": ["g"],
           "credentials": [{"format": "h10301", "facility": 999, "number": 55555}]}
    with pytest.raises(CacheError, match="facility") as info:
        cache.apply_page([good, bad], 2)
    assert "55555" not in str(info.value)
    assert cache.cursor == 0 and cache.credentials_of("p1") == ()
    cache.apply_page([good], 1)
    assert cache.credentials_of("p1") == (Credential.from_json(CARD),)
    # a hub from before credentials sends none: the person has none
    cache.apply_page([{**good, "seq": 3, "credentials": None}], 3)
    assert cache.credentials_of("p1") == ()
    cache.close()


def test_a_cache_of_version_1_syncs_again_from_zero(tmp_path) -> None:
    path = tmp_path / "old.db"
    cache = EdgeCache(path)
    cache.apply_page([{"seq": 5, "type": "person", "person_id": "p1", "group_ids": ["g"]}], 5)
    cache.close()
    with sqlite3.connect(path) as db:  # as the code before credentials left it
        db.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    cache = EdgeCache(path)
    assert cache.cursor == 0 and cache.counts()["persons"] == 1  # re-synced, still usable meanwhile
    cache.close()
    cache = EdgeCache(path)
    cache.apply_page([], 9)
    cache.close()
    cache = EdgeCache(path)
    assert cache.cursor == 9  # once: a version-2 cache keeps its cursor
    cache.close()
