"""The claims the site's doors refused, for each edge's lockout (edge.hub.claim_refusals): from
the access logs the edges uploaded, on SQLite and on PostgreSQL; and through a real hub's sync,
to an edge's lockout (docs/daemon.md#a-stolen-badge-gets-a-few-tries)."""

from __future__ import annotations

import time

import pytest

from edge.api.client import CloudApiError
from edge.core import errors
from edge.core.access_chain import canonical
from edge.core.syncwire import MAX_REFUSALS, MalformedChange, decode_refusals
from edge.daemon.cache import EdgeCache
from edge.daemon.claim_lockout import ClaimLockout
from edge.daemon.sync import Syncer
from edge.door.access_log import AccessLog
from edge.hub.claim_refusals import lifts_since, site_lifts, site_refusals
from tests.support.hub import hub_with_five_enrolled, older_sqlite_store

T0 = 1_800_000_000.0


def _door_log(path, entries, key=b"edge-key-refusal-tests") -> AccessLog:
    """An edge's access log holding `entries`: (at, person_id, decision, how its lockout counted)."""
    times = iter([at for at, *_ in entries])
    log = AccessLog(path, key, clock=lambda: next(times))
    for _, person, decision, counted in entries:
        detail = {"claim": person, "claim_lockout": counted} if counted else None
        log.append("decision", door="main", person_id=person, decision=decision,
                   outcome="grant" if decision == "accept" else "deny", reason="r", detail=detail)
    return log


def _enrol(store, appid: str, *person_ids: str, group: str = "staff") -> None:
    """Persons the hub has (refusals of anyone else are not read)."""
    import numpy as np

    from edge.hub.store.base import FaceRecord, Limits

    for pid in person_ids:
        face = FaceRecord(store.new_face_id(), pid, (1, 2, 80, 80), [[1.0, 2.0]] * 5,
                          embeddings={"fp": np.ones(8, np.float32) / np.sqrt(8)})
        store.create_person(appid, pid, [group], "", "", face, Limits())


def test_the_other_doors_refusals_after_that_doors_last_admission(hub_store, tmp_path):
    _enrol(hub_store, "app", "alice", "bob", "carol", "dave", "erin")
    a = _door_log(tmp_path / "a.db", [
        (T0 + 1, "alice", "reject", "refused"),
        (T0 + 2, "bob", "reject", "refused"),
        (T0 + 3, "alice", "reject", "refused"),
        (T0 + 4, "carol", "reject", None),  # identify's reject, or the offline policy's: not counted
        (T0 + 6, "bob", "accept", "admitted"),  # bob on his own badge: his count starts again
        (T0 + 7, "dave", "reject", "refused"),
        (T0 + 400, "erin", "reject", "refused")])  # this edge's clock ahead: never sent (no aging out)
    b = _door_log(tmp_path / "b.db", [
        (T0 + 5, "alice", "reject", "refused"),
        (T0 + 8, "dave", "accept", "admitted")])  # clears b's own refusals only (b starts his count itself)
    assert hub_store.store_access_records("app", "edge-a", a.records())[1] == 7
    assert hub_store.store_access_records("app", "edge-b", b.records())[1] == 2
    hub_store.store_access_records("other-app", "edge-a", a.records())  # another tenant's: never

    def refusals(edge_id, since, now=T0 + 10, person_id=None):
        """What the hub sends `edge_id` (the lifts read once, as the hub's sync does)."""
        lifted = lifts_since(hub_store, "app", since, now)
        return site_refusals(hub_store, "app", edge_id, since, lifted, now, person_id)

    assert refusals("edge-b", T0) == [
        ("alice", T0 + 1, "edge-a"), ("alice", T0 + 3, "edge-a"), ("dave", T0 + 7, "edge-a")]  # edge-b's own left out
    assert refusals("edge-a", T0) == [("alice", T0 + 5, "edge-b")]
    assert refusals("edge-b", T0 + 2) == [("alice", T0 + 3, "edge-a"), ("dave", T0 + 7, "edge-a")]
    assert refusals("edge-b", T0, person_id="bob") == []  # admitted since, at the door that refused him
    assert refusals("edge-c", T0, person_id="alice") == [
        ("alice", T0 + 1, "edge-a"), ("alice", T0 + 3, "edge-a"), ("alice", T0 + 5, "edge-b")]
    assert refusals("edge-c", T0) == [
        ("alice", T0 + 1, "edge-a"), ("alice", T0 + 3, "edge-a"), ("alice", T0 + 5, "edge-b"),
        ("dave", T0 + 7, "edge-a")]
    # never further back than a day, whatever the edge asks
    assert refusals("edge-c", 0, now=T0 + 86_400 + 4) == [
        ("alice", T0 + 5, "edge-b"), ("dave", T0 + 7, "edge-a"), ("erin", T0 + 400, "edge-a")]  # erin's now past
    # an operator lifts alice's lockout: her refusals before it count nowhere, and every edge is told
    hub_store.lift_claims("app", "alice", T0 + 3.5, "console:otto")
    assert refusals("edge-c", T0) == [("alice", T0 + 5, "edge-b"), ("dave", T0 + 7, "edge-a")]
    assert site_lifts(lifts_since(hub_store, "app", T0, T0 + 10)) == [("alice", T0 + 3.5)]
    assert site_lifts(lifts_since(hub_store, "app", T0 + 4, T0 + 10)) == []
    assert site_lifts(lifts_since(hub_store, "other-app", T0)) == []
    hub_store.lift_claims("app", "alice", T0 + 9, "api")  # the latest lift is what counts
    assert hub_store.claim_lifts("app", 0) == {"alice": (T0 + 9, "api")}
    assert refusals("edge-c", T0) == [("dave", T0 + 7, "edge-a")]


def test_what_an_edge_reads_is_checked():
    assert decode_refusals([{"person_id": "alice", "at": 5, "edge_id": "x"}]) == [("alice", 5.0)]
    for bad in ({}, [{"person_id": "", "at": 1}], [{"person_id": "a" * 129, "at": 1}], [{"person_id": "a"}],
                [{"person_id": "a", "at": float("nan")}], [{"person_id": "a", "at": True}], ["a"],
                [{"person_id": "a", "at": 1}] * (MAX_REFUSALS + 1)):
        with pytest.raises(MalformedChange):
            decode_refusals(bad)


def test_a_real_hub_tells_each_edge_the_others_refusals_and_its_lockout_counts_them(
        faces_dir, models_dir, tmp_path):
    """Door A refused Madonna's badge twice; door B syncs from a real hub (signed HTTP) and, with
    max_refusals 3, locks her badge at its own first refusal (without the hub's answer it would
    be the first of three); door A is not sent its own refusals back."""
    now = time.time()
    a = _door_log(tmp_path / "a.db", [(now - 60, "madonna", "reject", "refused"),
                                      (now - 30, "madonna", "reject", "refused")])
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub:
        client = hub.client(timeout=30.0, retries=0)
        try:
            assert client.uploadlog("edge-a", canonical(a.records()))["head"] == 2
            lockout = ClaimLockout(3, window_s=600, lockout_s=300)
            from edge.vision import Pipeline

            syncer = Syncer(client, EdgeCache(tmp_path / "b-cache.db"), Pipeline.load(models_dir).fingerprint,
                            report=lambda: {"edge_id": "edge-b"}, site_refusals=lockout)
            assert syncer.sync_once()["status"] == "ok"
            assert lockout.locked("madonna") == 0 and lockout.refused("madonna") is True
            assert 299 < lockout.locked("madonna") <= 300
            own = Syncer(client, EdgeCache(tmp_path / "a-cache.db"), syncer.fingerprint,
                         report=lambda: {"edge_id": "edge-a"}, site_refusals=(own_lock := ClaimLockout(2, 600, 300)))
            assert own.sync_once()["status"] == "ok"
            assert own_lock.refused("madonna") is False  # its own refusals are not sent back to it
            # the badge is back with its owner: lifted on the hub, every door lets her claims be decided
            assert client.liftclaims("madonna")["person_id"] == "madonna"
            assert syncer.sync_once()["status"] == "ok" and lockout.locked("madonna") == 0
            assert lockout.refused("madonna") is False  # and her count starts again
            with pytest.raises(CloudApiError) as unknown:
                client.liftclaims("nobody")
            assert unknown.value.code == errors.PERSON_UNKNOWN
        finally:
            client.close()


def test_a_version_7_sqlite_store_gets_the_lifts_table(tmp_path):
    """A hub store of the version before the lifts (7: access crops) gets their table at open."""
    import sqlite3

    from edge.hub.store import SqliteStore

    path = tmp_path / "v7.sqlite3"
    current = older_sqlite_store(path, 7, "claim_lifts")
    store = SqliteStore(path)
    store.lift_claims("app", "alice", T0, "api")
    assert store.claim_lifts("app", 0) == {"alice": (T0, "api")}
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == current == 13


def test_a_malformed_list_of_refusals_is_left_out_and_the_changes_still_apply(
        faces_dir, models_dir, tmp_path, monkeypatch, caplog):
    """A hub answering refusals an edge cannot read (a bug, a hostile hub): the edge logs it and
    applies the page's changes all the same (a deletion must reach the door); nothing locked."""
    import edge.hub.service as hub_service

    monkeypatch.setattr(hub_service.syncwire, "encode_refusals",
                        lambda refusals: [{"person_id": "madonna", "at": "yesterday"}] * 3)
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub:
        client = hub.client(timeout=30.0, retries=0)
        try:
            from edge.vision import Pipeline

            lockout = ClaimLockout(1, window_s=600, lockout_s=300)
            gallery = []
            syncer = Syncer(client, EdgeCache(tmp_path / "cache.db"), Pipeline.load(models_dir).fingerprint,
                            report=lambda: {"edge_id": "edge-b"}, site_refusals=lockout, on_gallery=gallery.append)
            assert syncer.sync_once()["status"] == "ok"
        finally:
            client.close()
    assert "madonna" in gallery[-1].person_ids and lockout.locked("madonna") == 0
    assert "claim refusals left out: claim_refusals: at is not a finite number" in caplog.text


def test_a_door_flooding_the_log_cannot_push_the_other_doors_refusals_out(hub_store, tmp_path, monkeypatch):
    """The refusals were read from the newest 20,000 decisions of every door, with no upper
    time bound: one door's key (a terminal taken off the wall) uploading records dated far ahead
    (or merely many) filled the read, and no other door's refusal was ever sent again: the
    site's badge lockout switched off for good. The marks are now read by their own column,
    up to the hub's clock (+ AHEAD_S), the newest PER_EDGE of each door."""
    import edge.hub.claim_refusals as claim_refusals

    # 20,000 records in small: the read's bound then (SCANNED) and now (PER_EDGE) set to 50
    monkeypatch.setattr(claim_refusals, "PER_EDGE", 50, raising=False)
    monkeypatch.setattr(claim_refusals, "SCANNED", 50, raising=False)
    far = 2.0 ** 35 - 100  # the latest time an upload may carry
    _enrol(hub_store, "app", "madonna", *[f"nobody{i}" for i in range(60)], *[f"ghost{i}" for i in range(200)],
           *[f"fake{i}" for i in range(120)])
    flood = [(far + i, f"nobody{i}", "reject", "refused") for i in range(60)]  # ahead: never read
    flood += [(T0 + 1 + i / 100, f"ghost{i}", "reject", None) for i in range(200)]  # unmarked: never read
    flood += [(T0 + 3 + i / 100, f"fake{i}", "reject", "refused") for i in range(120)]  # marked: its own 50
    hub_store.store_access_records("app", "door-taken", _door_log(tmp_path / "taken.db", flood).records())
    real = _door_log(tmp_path / "b.db", [(T0 + 2, "madonna", "reject", "refused")])
    hub_store.store_access_records("app", "door-b", real.records())
    lifted = lifts_since(hub_store, "app", T0, T0 + 10)
    heard = site_refusals(hub_store, "app", "door-c", T0, lifted, T0 + 10)
    assert ("madonna", T0 + 2, "door-b") in heard
    assert {e for _, _, e in heard} == {"door-b", "door-taken"}
    assert not any(p.startswith(("nobody", "ghost")) for p, _, _ in heard)
    assert len([p for p, _, _ in heard if p.startswith("fake")]) <= 50


def test_a_version_11_sqlite_store_gets_the_lockout_marks_of_the_records_it_holds(tmp_path):
    from edge.hub.store import SqliteStore

    path = tmp_path / "v11.sqlite3"
    store = SqliteStore(path)
    _enrol(store, "app", "alice", "bob")
    log = _door_log(tmp_path / "a.db", [(T0 + 1, "alice", "reject", "refused"), (T0 + 2, "bob", "reject", None)])
    store.store_access_records("app", "edge-a", log.records())
    store.close()
    import sqlite3

    with sqlite3.connect(path) as conn:  # as schema 11 had it: no column, no index
        conn.execute("DROP INDEX access_records_counted")
        conn.execute("ALTER TABLE access_records DROP COLUMN counted")
        conn.execute("PRAGMA user_version = 11")
    store = SqliteStore(path)
    try:
        assert site_refusals(store, "app", "edge-b", T0, {}, T0 + 10) == [("alice", T0 + 1, "edge-a")]
    finally:
        store.close()


def test_an_upgrade_stopped_midway_starts_again_from_the_old_schema(tmp_path, monkeypatch):
    """The upgrade ran statement by statement: a process killed after adding the column and
    before filling it (a long fill on a Pi, an operator's Ctrl-C) left it empty for good, since
    the next start saw the column and skipped the fill, and the stored refusals no longer
    counted at the other doors. The whole upgrade is one transaction now."""
    import sqlite3

    from edge.hub.store import SqliteStore, access, sqlite

    path = tmp_path / "v11.sqlite3"
    store = SqliteStore(path)
    _enrol(store, "app", "alice")
    store.store_access_records("app", "edge-a", _door_log(tmp_path / "a.db", [(T0 + 1, "alice", "reject",
                                                                                 "refused")]).records())
    store.close()
    with sqlite3.connect(path) as conn:  # as schema 11 had it: no column, no index
        conn.execute("DROP INDEX access_records_counted")
        conn.execute("ALTER TABLE access_records DROP COLUMN counted")
        conn.execute("PRAGMA user_version = 11")

    class Killed(BaseException):
        pass

    def add_then_killed(conn):
        conn.execute("ALTER TABLE access_records ADD COLUMN counted TEXT NOT NULL DEFAULT ''")
        raise Killed  # as the process dying between the two statements

    monkeypatch.setattr(sqlite, "add_counted_column", add_then_killed)
    with pytest.raises(Killed):
        SqliteStore(path)
    monkeypatch.setattr(sqlite, "add_counted_column", access.add_counted_column)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 11
    store = SqliteStore(path)
    try:
        assert site_refusals(store, "app", "edge-b", T0, {}, T0 + 10) == [("alice", T0 + 1, "edge-a")]
    finally:
        store.close()


@pytest.mark.parametrize("person", ["ann\n2030-01-01 WARNING edge.daemon: remote unlock by admin", "a b", "x/y",
                                    "ann\u202e"])
def test_a_refusal_naming_no_id_is_refused_by_the_edge(person):
    """The edge logs the refusals the hub hands it: a door key's forged record with a newline in
    its person_id made that log line two, the second one made up (journald starts a line at
    each newline). A refusal's person_id is an id, or the hub's list is left out."""
    from edge.core import syncwire

    with pytest.raises(syncwire.MalformedChange):
        syncwire.decode_refusals([{"person_id": person, "at": 1.8e9}])
    assert syncwire.decode_refusals([{"person_id": "ann", "at": 1.8e9}]) == [("ann", 1.8e9)]


def test_a_door_key_cannot_crowd_out_or_erase_the_other_doors_refusals(hub_store, tmp_path):
    """The refusals were read per door (5,000 each), then cut to the newest 1,000 of all doors:
    one door's key (a terminal taken off the wall) uploading 1,000 refusals of made-up persons
    dated a minute ahead filled the list, and madonna's refusal at door b reached no other door;
    a group-bound key's list was cut before its persons were chosen, so it came out empty. One
    forged `admitted` mark of madonna erased every door's refusals of her. Now only enrolled
    persons' marks are read, the list is shared fairly by the doors, a group-bound key's persons
    are chosen first, and an admission clears the admitting door's refusals only."""
    now = T0 + 10
    _enrol(hub_store, "app", "madonna")
    _enrol(hub_store, "app", *[f"member{i}" for i in range(MAX_REFUSALS)], group="vault")
    made_up = [(now + 1 + i / 100, f"x{i}", "reject", "refused") for i in range(MAX_REFUSALS)]
    real_ones = [(now + 1 + i / 100, f"member{i}", "reject", "refused") for i in range(MAX_REFUSALS)]
    taken = _door_log(tmp_path / "taken.db", [*made_up, *real_ones, (now + 60, "madonna", "accept", "admitted")])
    for after in range(0, 2 * MAX_REFUSALS + 1, 1000):  # uploads of 1,000 records at most
        hub_store.store_access_records("app", "door-taken", taken.records(after, 1000))
    b = _door_log(tmp_path / "b.db", [(T0 + 2, "madonna", "reject", "refused"),
                                      (T0 + 3, "madonna", "reject", "refused")])
    hub_store.store_access_records("app", "door-b", b.records())

    heard = site_refusals(hub_store, "app", "door-c", T0, {}, now)
    assert [r for r in heard if r[0] == "madonna"] == [("madonna", T0 + 2, "door-b"), ("madonna", T0 + 3, "door-b")]
    assert len(heard) == MAX_REFUSALS and not any(p.startswith("x") for p, _, _ in heard)

    def staff_only(ids: set[str]) -> set[str]:  # what the hub's members_of keeps for a key bound to "staff"
        from edge.hub.claim_refusals import members_of

        return members_of(hub_store, "app", ids, ["staff"])

    lobby = site_refusals(hub_store, "app", "door-c", T0, {}, now, keep=staff_only)
    assert lobby == [("madonna", T0 + 2, "door-b"), ("madonna", T0 + 3, "door-b")]


def test_a_group_bound_door_speaks_for_its_groups_persons_only(tmp_path):
    """A lobby door's key bound to "staff", taken off the wall, uploaded refused claims of the
    CEO (in "board" only) under the lobby's own id, which its key may; the server room's door
    (bound to "board") was sent them in its sync and counted them: the CEO's badge locked out
    by a key that may speak for staff only. A real hub, keys as `hub edgekey --group` makes them."""
    from contextlib import closing

    from edge.api.client import CloudClient
    from edge.core.signature import Credential
    from edge.hub.claim_refusals import door_groups
    from edge.hub.edge_keys import add_edge_key
    from tests.support.hub import APPID, served_fingerprint, start_hub

    lobby_id, room_id = "AKIDedge" + "1" * 28, "AKIDedge" + "2" * 28
    secrets_file = tmp_path / "hub" / "hub-secrets.toml"
    lobby = add_edge_key(secrets_file, APPID, lobby_id, ("staff",))
    room = add_edge_key(secrets_file, APPID, room_id, ("board",))
    with start_hub(tmp_path / "hub") as hub, closing(hub.client(timeout=60, retries=0)) as operator, \
            closing(CloudClient(hub.url, APPID, lobby.secret_id, lobby.secret_key, timeout=60, retries=0)) as taken, \
            closing(CloudClient(hub.url, APPID, room.secret_id, room.secret_key, timeout=60, retries=0)) as server_room:
        _enrol(hub.store, APPID, "clerk", group="staff")
        _enrol(hub.store, APPID, "ceo", group="board")
        fingerprint = served_fingerprint(operator)
        now = time.time()
        forged = _door_log(tmp_path / "forged.db", [(now - 5 + i, who, "reject", "refused")
                                                    for i, who in enumerate(["ceo"] * 5 + ["clerk"])],
                           key=b"the taker's own chain key")
        assert taken.uploadlog(lobby_id, canonical(forged.records()))["stored"] == 6  # its own id: stored
        heard = server_room.sync(0, fingerprint, group_ids=["board"], report={"edge_id": room_id},
                                 refusals_since=now - 60)
        assert decode_refusals(heard["claim_refusals"]) == []  # the CEO's: not the lobby's to say
        page = operator.sync(0, fingerprint, report={"edge_id": "AKIDedge-other"}, refusals_since=now - 60)
        assert [p for p, _ in decode_refusals(page["claim_refusals"])] == ["clerk"]  # its own group's: counted

    assert door_groups([Credential("a", "k1", "s", "door-1", ("staff",)), Credential("a", "k2", "s", "door-1", ("x",)),
                        Credential("a", "k3", "s", "door-2", ("staff",)), Credential("a", "k4", "s", "door-2"),
                        Credential("a", "k5", "s")]) == {"door-1": frozenset({"staff", "x"})}  # door-2: any group
