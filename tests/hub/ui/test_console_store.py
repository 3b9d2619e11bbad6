"""The console's rows in both stores (SQLite, and PostgreSQL through migration 0003): accounts,
sessions that end with their account or its password, login failures, the persons' page, and
face crops that only their own appid reads."""

from __future__ import annotations

import numpy as np
import pytest

from edge.hub.store import FaceRecord, Limits, open_store
from edge.hub.store.console import Account


@pytest.fixture
def store(hub_store):
    return hub_store


def person(store, appid, person_id, name="", crop=None) -> str:
    vec = np.ones(8, np.float32) / np.sqrt(8)
    face = FaceRecord(store.new_face_id(), person_id, (1, 2, 80, 80), [[1.0, 2.0]] * 5, embeddings={"fp": vec},
                      crop=crop)
    store.create_person(appid, person_id, ["g"], name, "", face, Limits())
    return face.face_id


def test_accounts_and_sessions(store):
    assert store.add_account(Account("ada", "1", "admin", "hash-a", 1.0))
    assert not store.add_account(Account("ada", "2", "viewer", "hash-b", 2.0))  # taken
    assert store.add_account(Account("bob", "2", "viewer", "hash-b", 2.0))
    assert [a.username for a in store.accounts("1")] == ["ada"]
    assert [a.username for a in store.accounts()] == ["ada", "bob"]
    assert store.create_session("t1", "ada", 100.0, expired_before=0.0, password_hash="hash-a")
    assert store.create_session("t2", "ada", 100.0, expired_before=0.0, password_hash="hash-a")
    assert store.create_session("t3", "bob", 100.0, expired_before=0.0, password_hash="hash-b")
    assert store.session("t1").account.appid == "1" and store.session("nope") is None
    store.touch_session("t1", 150.0)
    assert store.session("t1").last_seen == 150.0 and store.session("t1").created == 100.0
    store.end_session("t1")
    assert store.session("t1") is None and store.session("t2") is not None
    assert store.set_password("ada", "hash-new")  # a reset ends every session of the account
    assert store.session("t2") is None and store.account("ada").password == "hash-new"
    # a login that checked the old hash while the reset ran gets no session
    assert not store.create_session("t2b", "ada", 100.0, expired_before=0.0, password_hash="hash-a")
    assert store.session("t2b") is None
    assert store.session("t3") is not None
    assert store.delete_account("bob") and store.session("t3") is None and store.account("bob") is None
    store.create_session("t4", "ada", 1000.0, expired_before=0.0, password_hash="hash-new")
    store.create_session("t5", "ada", 5000.0, expired_before=2000.0, password_hash="hash-new")  # t4 seen too long ago
    assert store.session("t4") is None and store.session("t5") is not None


def test_login_attempts_are_counted_before_the_check_and_a_success_takes_its_own_back(store):
    limits = {"user:a": 2, "addr:x": 3}
    assert store.claim_login_attempt(limits, 10.0, 0.0) and store.claim_login_attempt(limits, 20.0, 0.0)
    assert not store.claim_login_attempt(limits, 25.0, 0.0)  # user:a has 2: refused, nothing written
    assert store.claim_login_attempt({"user:b": 2, "addr:x": 3}, 30.0, 0.0)  # addr:x now 3
    assert not store.claim_login_attempt({"user:c": 2, "addr:x": 3}, 35.0, 0.0)
    store.login_succeeded("user:b", "addr:x", 30.0)  # b's attempt at 30 passed: taken back
    assert store.claim_login_attempt({"user:c": 2, "addr:x": 3}, 36.0, 0.0)
    assert store.claim_login_attempt({"user:d": 2, "addr:x": 3}, 37.0, 15.0)  # the one at 10.0 left the window
    assert store.claim_login_attempt({"user:a": 2, "addr:y": 3}, 38.0, 0.0)  # a: 20.0 left, and this one
    assert not store.claim_login_attempt({"user:a": 2, "addr:z": 3}, 39.0, 0.0)
    store.login_succeeded("user:a", "addr:x", 99.0)  # clears a's failures, no attempt at 99 to take back
    assert store.claim_login_attempt({"user:a": 2, "addr:z": 3}, 40.0, 0.0)


def test_login_failures_an_older_release_kept_by_the_name_typed_are_forgotten(store):
    """An older release counted failures under the name as typed (sometimes a password, in the
    wrong box): the console deletes those rows at start; the HMAC-keyed ones and addresses stay."""
    hashed = "user:" + "ab" * 32
    assert store.claim_login_attempt({"user:correct horse battery": 5, "addr:x": 20}, 10.0, 0.0)
    assert store.claim_login_attempt({hashed: 5, "addr:x": 20}, 11.0, 0.0)
    assert store.forget_plain_login_names() == 1
    assert not store.claim_login_attempt({hashed: 1}, 12.0, 0.0)  # its failure is still counted
    assert store.claim_login_attempt({"user:correct horse battery": 1}, 12.0, 0.0)  # gone


def test_persons_page_and_crops_per_appid(store):
    for i in range(7):
        person(store, "1", f"p{i}", "Zoë" if i == 3 else "")
    person(store, "1", "100%_sure")
    face_id = person(store, "1", "with-crop", crop=b"sealed")
    person(store, "2", "p-other")
    total, rows = store.persons_page("1", "", 0, 5)
    assert total == 9 and [r.person_id for r in rows] == ["100%_sure", "p0", "p1", "p2", "p3"]
    assert rows[1].faces == 1 and rows[1].group_ids == ("g",)
    assert [r.person_id for r in store.persons_page("1", "", 5, 5)[1]] == ["p4", "p5", "p6", "with-crop"]
    assert [r.person_id for r in store.persons_page("1", "zoë", 0, 5)[1]] == ["p3"]
    assert [r.person_id for r in store.persons_page("1", "%_", 0, 5)[1]] == ["100%_sure"]  # literal
    assert store.persons_page("2", "p", 0, 5)[0] == 1
    assert store.group_sizes("1") == [("g", 9)]
    assert store.face_crop("1", face_id) == b"sealed"
    assert store.face_crop("2", face_id) is None  # another tenant's face is no face at all


def test_an_older_sqlite_file_gets_the_console_tables_at_open(tmp_path):
    import sqlite3

    from edge.hub.store.sqlite import SCHEMA_VERSION

    path = tmp_path / "old.sqlite3"
    open_store("", str(path)).close()
    with sqlite3.connect(path) as conn:  # as the code before the console left it
        for table in ("console_login_failures", "console_sessions", "console_accounts"):
            conn.execute(f"DROP TABLE {table}")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    store = open_store("", str(path))
    try:
        assert store.add_account(Account("ada", "1", "admin", "hash", 1.0)) and store.accounts()[0].username == "ada"
    finally:
        store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_edge_reports_a_persons_last_change_and_decisions_newest_first(store, tmp_path):
    """The doors page's and the decisions page's reads, on SQLite and PostgreSQL alike."""
    from edge.door.access_log import AccessLog
    from edge.hub.store.edges import EdgeReport

    store.record_edge("a", EdgeReport("edge-1", 100.0, 3, "fp", "on", "locked, mode normal", "ok"))
    store.record_edge("a", EdgeReport("edge-1", 160.0, 7, "fp", "require", "open, mode normal, tamper", "degraded",
                                      "edge", ("staff", "night")))
    store.record_edge("b", EdgeReport("edge-1", 50.0, 1, "fp", "off", "", "ok", "appid"))
    assert store.edge_reports("a") == [EdgeReport("edge-1", 160.0, 7, "fp", "require", "open, mode normal, tamper",
                                                  "degraded", "edge", ("staff", "night"))]
    assert [(r.key, r.groups) for r in store.edge_reports("b")] == [("appid", ())]
    assert [r.cursor for r in store.edge_reports("b")] == [1]
    vec = np.ones(4, np.float32) / 2
    face = FaceRecord(store.new_face_id(), "ann", (1, 2, 80, 80), [[1.0, 2.0]] * 5, quality=0.9,
                      embeddings={"fp": vec})
    store.create_person("a", "ann", ["staff"], "Ann", "", face, Limits())
    assert store.person_last_seq("a", "ann") == store.last_seq("a") > 0
    store.delete_person("a", "ann")
    assert store.person_last_seq("a", "ann") == store.last_seq("a") and store.person_last_seq("a", "nobody") == 0
    clock = iter(float(t) for t in range(1000, 1005))
    log = AccessLog(tmp_path / "log.db", b"k" * 32, clock=lambda: next(clock))
    records = [log.append("decision", door="main", person_id="ann", decision="accept", outcome="grant")
               for _ in range(5)]
    store.store_access_records("a", "edge-1", records)
    first, after = store.search_access("a", {"kind": "decision"}, limit=2, newest_first=True)
    assert [r["seq"] for r in first] == [5, 4]
    second, after = store.search_access("a", {"kind": "decision"}, after=after, limit=2, newest_first=True)
    third, end = store.search_access("a", {"kind": "decision"}, after=after, limit=2, newest_first=True)
    assert [r["seq"] for r in second + third] == [3, 2, 1] and end is None
    assert store.access_record("a", "edge-1", 3)["at"] == 1002.0 and store.access_record("b", "edge-1", 3) is None
