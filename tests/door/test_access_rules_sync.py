"""Access rules managed on the hub (stored on SQLite and PostgreSQL, a signed API validating
each write) and synced to an edge's cache, which keeps the last good rules when a synced
document fails validation."""

from __future__ import annotations

import json
import sqlite3

import pytest

from edge.api.client import CloudApiError
from edge.core import access_rules as ar
from edge.core import syncwire
from edge.daemon.cache import CacheError, EdgeCache
from edge.daemon.sync import Syncer
from edge.door.access import AccessPolicy
from edge.hub.store import SqliteStore
from tests.door.test_access import DOC, TUESDAY_9, History, req
from tests.support.hub import older_sqlite_store, served_fingerprint, start_hub

FP = "fingerprint-a"
TEXT = json.dumps(DOC)


@pytest.fixture
def store(hub_store):
    return hub_store


def test_rules_are_versioned_per_appid_with_a_change_row(store) -> None:
    assert store.get_rules("app") is None
    assert store.set_rules("app", TEXT) == 1
    assert store.set_rules("app", TEXT, expected_version=1) == 2
    with pytest.raises(ar.RulesError) as err:
        store.set_rules("app", "{}", expected_version=1)  # someone else wrote version 2 meanwhile
    assert err.value.code == ar.RULES_VERSION_CONFLICT
    assert store.get_rules("app") == (2, TEXT)
    assert store.get_rules("other") is None  # another tenant has none
    # The feed carries the current document once, at the last write's row, only to an edge
    # asking for rules (each row carried it: 1,000 edits of a 256 KB document, a page of 256 MB).
    page = store.sync_page("app", 0, FP, None, 100, with_rules=True)
    assert [(type(c).__name__, c.version, c.seq) for c in page.changes] == [("RulesChange", 2, page.cursor)]
    assert [syncwire.decode(syncwire.encode(c)) for c in page.changes] == page.changes
    assert page.rules_version == 2
    plain = store.sync_page("app", 0, FP, None, 100)
    assert plain.changes == [] and plain.cursor == page.cursor  # skipped, but the cursor moves on


def test_sqlite_schema_5_is_added_to_a_version_4_file(tmp_path) -> None:
    path = tmp_path / "old.sqlite3"
    current = older_sqlite_store(path, 4, "access_rules", "access_records", "access_chains", "access_crops",
                                 "claim_lifts")
    s = SqliteStore(path)
    assert s.set_rules("app", TEXT) == 1
    s.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == current == 13


@pytest.fixture(scope="module")
def hub(tmp_path_factory, models_dir):
    with start_hub(tmp_path_factory.mktemp("ruleshub")) as hub:
        client = hub.client(timeout=30.0, retries=0)
        yield hub, client
        client.close()


def code(fn, *args) -> int:
    with pytest.raises(CloudApiError) as err:
        fn(*args)
    return err.value.code


def test_api_validates_on_write_and_an_edge_syncs_the_rules(hub, tmp_path) -> None:
    hub_server, client = hub
    broken = json.loads(TEXT)
    broken["access_levels"][0]["groups"] = ["ghosts"]
    assert code(client.setrules, json.dumps(broken)) == ar.RULES_UNKNOWN_GROUP
    assert code(client.setrules, json.dumps({**DOC, "timezone": "Mars/Olympus"})) == ar.RULES_UNKNOWN_TIMEZONE
    assert code(client.setrules, "{not json") == ar.RULES_MALFORMED
    assert client.getrules()["version"] == 0  # nothing refused was stored

    first = client.setrules(TEXT)["version"]
    assert code(client.setrules, TEXT, first - 1) == ar.RULES_VERSION_CONFLICT
    assert json.loads(client.getrules()["rules"]) == DOC

    cache = EdgeCache(tmp_path / "cache.db")
    syncer = Syncer(client, cache, served_fingerprint(client))
    assert syncer.sync_once()["status"] == "ok"
    rules = cache.rules()
    assert rules is not None and rules.version == first and "front" in rules.doors
    policy = AccessPolicy(cache.rules)
    assert policy.evaluate(req(TUESDAY_9), History()).granted

    # A document the hub stored but this edge cannot validate (written past the API, as an
    # older or damaged hub might): the last good rules stay, the refusal is reported.
    bad = hub_server.store.set_rules(hub_server.appid, json.dumps({**DOC, "timezone": "Nowhere/Void"}))
    assert syncer.sync_once()["status"] == "ok"  # the cursor moves on: the feed is not stuck
    assert cache.rules_status() == {"version": first, "refused": bad,
                                    "error": "time zone does not exist: 'Nowhere/Void'", "hub": bad}
    assert cache.rules().version == first and policy.evaluate(req(TUESDAY_9), History()).granted

    # The next good document replaces it, and survives a restart of the edge.
    fixed = client.setrules(TEXT)["version"]
    syncer.sync_once()
    assert cache.rules_status() == {"version": fixed, "refused": None, "error": "", "hub": fixed}
    cache.close()
    assert EdgeCache(tmp_path / "cache.db").rules().version == fixed


def test_an_edge_with_no_good_rules_denies(hub, tmp_path) -> None:
    cache = EdgeCache(tmp_path / "empty.db")
    v = AccessPolicy(cache.rules).evaluate(req(TUESDAY_9), History())
    assert (v.granted, v.reason) == (False, "rules_invalid")
    # A page whose rules change fails decoding rolls back whole: nothing half-applied.
    with pytest.raises(CacheError):
        cache.apply_page([{"seq": 1, "type": "rules", "version": 1, "rules": TEXT},
                          {"seq": 2, "type": "rules", "version": "x", "rules": TEXT}], 2)
    assert cache.rules() is None and cache.cursor == 0


def test_a_cache_from_before_rules_syncs_again_from_zero_once(tmp_path) -> None:
    # A version-2 cache moved its cursor past rules changes without asking for them.
    cache = EdgeCache(tmp_path / "c.db")
    cache.apply_page([], 9)
    cache.close()
    db = sqlite3.connect(tmp_path / "c.db")
    db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    cache = EdgeCache(tmp_path / "c.db")
    assert cache.cursor == 0
    cache.apply_page([{"seq": 3, "type": "rules", "version": 1, "rules": TEXT}], 9)
    cache.close()
    cache = EdgeCache(tmp_path / "c.db")
    assert cache.cursor == 9 and cache.rules().version == 1  # once


def test_a_sync_cut_before_the_hubs_rules_leaves_the_door_denying(tmp_path, models_dir) -> None:
    """Through a real hub: the site enrolled its people, then set its rules, so a fresh edge's
    sync brings the persons first. Each page says the hub's rules version; an edge whose sync
    stopped before the rules row denies every request (it decided on the config's groups), and
    decides by the rules once it has them."""
    import numpy as np

    from edge.door.rules import GroupRules
    from edge.door.rules_in_force import GROUPS, PENDING, RULES_PENDING, SYNCED, RulesInForce
    from edge.hub.store import FaceRecord, Limits

    with start_hub(tmp_path / "hub") as hub, hub.client(timeout=30.0, retries=0) as client:
        for pid in ("ann", "ben", "cas"):
            hub.store.create_person(hub.appid, pid, ["staff"], "", "", FaceRecord(
                hub.store.new_face_id(), pid, (1, 2, 90, 90), [[1.0, 2.0]] * 5, quality=0.9,
                embeddings={"another-pack": np.ones(4, np.float32) / 2}), Limits())
        cache = EdgeCache(tmp_path / "cut.db")
        rules = RulesInForce(cache.rules, cache.rules_status, GroupRules(["staff"]))
        syncer = Syncer(client, cache, served_fingerprint(client), page_size=2, max_pages=1)
        assert syncer.sync_once()["status"] == "syncing" and rules.current()[0] == GROUPS  # the hub has none yet
        version = client.setrules(TEXT)["version"]
        assert syncer.sync_once()["status"] == "syncing"  # one more page of persons: cut there
        assert cache.rules_status()["hub"] == version and cache.rules_status()["version"] == 0
        assert rules.current()[0] == PENDING
        assert rules.evaluate(req(TUESDAY_9), History()).reason == RULES_PENDING
        syncer.page_size, syncer.max_pages = 500, 100
        assert syncer.sync_once()["status"] == "ok"
        assert rules.current()[0] == SYNCED and rules.evaluate(req(TUESDAY_9), History()).granted
