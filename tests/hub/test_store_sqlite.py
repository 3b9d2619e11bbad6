"""SqliteStore: persistence settings, transactions with the change log, limits, cascades."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from edge.hub.store import FaceRecord, Limits, SqliteStore
from edge.hub.store.sqlite import SCHEMA_VERSION
from tests.conftest import code_of

FP = "fingerprint-a"


def face(store, person_id="p1", seed=0) -> FaceRecord:
    vec = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return FaceRecord(face_id=store.new_face_id(), person_id=person_id, box=(1, 2, 30, 40),
                      landmarks=[[1.0, 2.0]] * 5, yaw=1.5, pitch=-2.0, roll=0.5, quality=0.9,
                      embeddings={FP: vec / np.linalg.norm(vec)})


@pytest.fixture
def store(tmp_path):
    s = SqliteStore(tmp_path / "hub.sqlite3")
    yield s
    s.close()


def test_database_is_wal_with_foreign_keys_and_a_schema_version(store, tmp_path):
    conn = sqlite3.connect(tmp_path / "hub.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 13
    assert store._conn().execute("PRAGMA foreign_keys").fetchone()[0] == 1


def test_a_version_1_file_gets_the_crops_table_and_its_faces_are_listed_without_crop(tmp_path):
    path = tmp_path / "old.sqlite3"
    s = SqliteStore(path)
    old = face(s)
    s.create_person("app", "p1", ["g"], "", "", old, Limits())
    s.close()
    with sqlite3.connect(path) as conn:  # as the code before face crops left it
        conn.execute("DROP TABLE face_crops")
        conn.execute("PRAGMA user_version = 1")
    s = SqliteStore(path)
    try:
        new = face(s, seed=1)
        new.crop = b"sealed bytes"
        s.add_faces("app", "p1", [new], Limits())
        assert sorted((c.face_id, c.crop) for c in s.faces_to_embed("fp-b", "", 10)) == sorted(
            [(old.face_id, None), (new.face_id, b"sealed bytes")])
        assert s.add_embeddings("app", "fp-b", {new.face_id: np.ones(4, np.float32)}) == [new.face_id]
        assert s.add_embeddings("app", "fp-b", {new.face_id: np.zeros(4, np.float32)}) == []  # kept
        assert s.add_embeddings("other-app", "fp-b", {old.face_id: np.ones(4, np.float32)}) == []
        assert s.embedding_coverage("fp-b") == (2, 1)
        assert [c.face_id for c in s.faces_to_embed("fp-b", "", 10)] == [old.face_id]
    finally:
        s.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


@pytest.mark.parametrize("version", [8, 9])
def test_an_older_file_gets_the_key_and_groups_of_each_edges_report(tmp_path, version):
    """Schema 9 keeps which kind of hub key an edge synced with, 10 the groups it asked for; the
    rows an older hub wrote keep what they said, with the kind and groups not known."""
    from edge.hub.store.edges import EdgeReport

    path = tmp_path / f"v{version}.sqlite3"
    s = SqliteStore(path)
    s.record_edge("app", EdgeReport("edge-old", 100.0, 3, "fp", "require", "locked, mode normal", "ok"))
    s.close()
    with sqlite3.connect(path) as conn:  # as the code before them left it
        conn.execute("ALTER TABLE edge_reports DROP COLUMN groups")
        if version == 8:
            conn.execute("ALTER TABLE edge_reports DROP COLUMN key")
        conn.execute(f"PRAGMA user_version = {version}")
    s = SqliteStore(path)
    try:
        s.record_edge("app", EdgeReport("edge-new", 160.0, 7, "fp", "require", "", "ok", "edge", ("staff", "x,y")))
        assert s.edge_reports("app") == [
            EdgeReport("edge-new", 160.0, 7, "fp", "require", "", "ok", "edge", ("staff", "x,y")),
            EdgeReport("edge-old", 100.0, 3, "fp", "require", "locked, mode normal", "ok")]
    finally:
        s.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_person_with_face_survives_reopening(tmp_path):
    s = SqliteStore(tmp_path / "db.sqlite3")
    f = face(s)
    assert s.create_person("app", "p1", ["g1", "g2"], "Name", "tag", f, Limits()) == 2
    s.close()
    s = SqliteStore(tmp_path / "db.sqlite3")
    p = s.get_person("app", "p1")
    assert (p.person_name, p.tag, p.group_ids, p.face_ids) == ("Name", "tag", ["g1", "g2"], [f.face_id])
    got = s.face("app", f.face_id)
    assert got.box == (1, 2, 30, 40) and got.yaw == 1.5 and got.landmarks == [[1.0, 2.0]] * 5
    (stored,) = s.embeddings("app", FP)
    vec, groups = stored.embedding, stored.group_ids
    assert np.allclose(vec, f.embeddings[FP]) and set(groups) == {"g1", "g2"}
    s.close()


def test_appids_are_isolated(store):
    store.create_person("app", "p1", ["g"], "", "", face(store), Limits())
    assert code_of(store.get_person, "other", "p1") == -1303
    assert store.group_ids("other") == []


def test_existing_person_is_refused_and_nothing_is_logged(store):
    store.create_person("app", "p1", ["g"], "", "", face(store), Limits())
    seq = store.last_seq("app")
    assert code_of(store.create_person, "app", "p1", ["g"], "", "", face(store), Limits()) == -1302
    assert store.last_seq("app") == seq


def test_failed_mutation_rolls_back_with_its_change_rows(store):
    limits = Limits(groups_per_appid=2)
    store.create_person("app", "p1", ["g1", "g2"], "", "", face(store), limits)
    seq = store.last_seq("app")
    assert code_of(store.create_person, "app", "p2", ["g3"], "", "", face(store, "p2"), limits) == -1311
    assert code_of(store.get_person, "app", "p2") == -1303
    assert store.last_seq("app") == seq


def test_count_limits_give_their_codes(store):
    limits = Limits(faces_per_person=2, persons_per_group=1, groups_per_appid=5)
    store.create_person("app", "p1", ["g"], "", "", face(store), limits)
    assert code_of(store.create_person, "app", "p2", ["g"], "", "", face(store, "p2"), limits) == -1310
    store.add_faces("app", "p1", [face(store, seed=1)], limits)
    assert code_of(store.add_faces, "app", "p1", [face(store, seed=2)], limits) == -1309


def test_deleting_a_person_removes_faces_embeddings_and_empty_groups(store):
    f = face(store)
    store.create_person("app", "p1", ["solo"], "", "", f, Limits())
    store.delete_person("app", "p1")
    assert store.group_ids("app") == []
    assert code_of(store.face, "app", f.face_id) == -1305
    assert store.embeddings("app", FP) == []
    assert code_of(store.delete_person, "app", "p1") == -1303


def test_change_log_sequence_is_monotonic_across_mutations(store):
    seqs = []
    store.create_person("app", "p1", ["g"], "", "", face(store), Limits())
    seqs.append(store.last_seq("app"))
    store.set_info("app", "p1", "New", None)
    seqs.append(store.last_seq("app"))
    store.add_faces("app", "p1", [face(store, seed=3)], Limits())
    seqs.append(store.last_seq("app"))
    store.delete_person("app", "p1")
    seqs.append(store.last_seq("app"))
    assert seqs == sorted(set(seqs))


def test_a_person_cannot_leave_its_last_group(store):
    store.create_person("app", "p1", ["g1", "g2"], "", "", face(store), Limits())
    assert store.remove_groups("app", "p1", ["g1", "nope"]) == ["g1"]
    assert code_of(store.remove_groups, "app", "p1", ["g2"]) == 21
    assert store.get_person("app", "p1").group_ids == ["g2"]


def test_verify_decisions_are_recorded_under_their_session(store):
    from edge.hub.store import VerifyRecord

    store.log_verify(VerifyRecord("s1", "app", "p1", 0.61, 75.0, True, 1.0))
    assert store.get_verify("s1") == VerifyRecord("s1", "app", "p1", 0.61, 75.0, True, 1.0)
    assert store.get_verify("s2") is None


def test_concurrent_writers_from_many_threads_lose_nothing(store):
    import threading

    errors = []

    def writer(t: int) -> None:
        try:
            for i in range(10):
                pid = f"t{t}-p{i}"
                store.create_person("app", pid, [f"g{t % 2}"], "", "", face(store, pid, seed=i), Limits())
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(store.person_ids("app", "g0")) + len(store.person_ids("app", "g1")) == 40
    page = store.sync_page("app", 0, FP, None, 1000)
    seqs = [c.seq for c in page.changes]
    assert len(seqs) == 80 and seqs == sorted(set(seqs))


def test_a_damaged_store_file_is_a_clear_error_for_every_command_not_a_traceback(tmp_path, models_dir, capsys):
    """A hub.sqlite3 that is not SQLite (a failing disk, a file copied over it): the store says
    which file and what to do; `edge-verifier` commands exit 1 with that line, the file untouched."""
    from edge.cli import main
    from edge.core.sqlitedb import DamagedDatabase

    path = tmp_path / "hub.sqlite3"
    garbage = b"\x00not sqlite\xff" * 400
    path.write_bytes(garbage)
    with pytest.raises(DamagedDatabase, match="hub.sqlite3: file is not a database") as raised:
        SqliteStore(path)
    assert raised.value.path == path and "restore the file from a backup" in str(raised.value)
    config = tmp_path / "hub.toml"
    config.write_text(f'[storage]\npath = "{path}"\n[vision]\nmodels_dir = "{models_dir}"\n'
                      '[[credentials]]\nappid = "1000001"\nsecret_id = "AKIDtest"\nsecret_key = "' + "k" * 40 + '"\n')
    config.chmod(0o600)
    capsys.readouterr()
    assert main(["audit", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("edge-verifier audit: error: ") and "file is not a database" in err
    assert path.read_bytes() == garbage


def test_idle_syncs_and_the_access_log_trim_find_their_rows_by_index(store, hub_store, tmp_path):
    """An idle sync asking for rules read the appid's newest rules change by walking its whole
    change log (44 ms at 200,000 changes on SQLite, 27 ms on PostgreSQL, every idle sync of every
    door); the access log's trim scanned every record under the write lock (38 / 29 ms at
    300,000, nothing to delete). Each now has an index; the trim goes in batches."""
    import sqlite3

    conn = sqlite3.connect(store.path)
    plans = {name: " ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
             for name, (sql, args) in {
                 "rules": ("SELECT MAX(seq) FROM changes WHERE appid = ? AND kind = 'rules'", ("a",)),
                 "trim": ("SELECT appid, edge_id, seq FROM access_records WHERE received < ? LIMIT 5000", (1.0,)),
             }.items()}
    conn.close()
    assert "changes_by_kind" in plans["rules"] and "access_records_received" in plans["trim"], plans
    with hub_store._read() as c:  # both stores have them (PostgreSQL: migration 0013)
        if hub_store.PARAM == "?":
            names = {r[0] for r in hub_store._q(c, "SELECT name FROM sqlite_master WHERE type = 'index'")}
        else:
            names = {r[0] for r in hub_store._q(c, "SELECT indexname FROM pg_indexes")}
    assert {"changes_by_kind", "access_records_received"} <= names

    from edge.door.access_log import AccessLog

    times = iter(range(1, 13))
    log = AccessLog(tmp_path / "door.db", b"k" * 32, clock=lambda: float(next(times)))
    for i in range(12):
        log.append("decision", door="main", person_id=f"p{i}", decision="reject", outcome="deny", reason="r")
    for record in log.records():  # received when they happened
        hub_store.store_access_records("app", "edge-a", [record], received=record["at"])
    assert hub_store.trim_access_log(10.5, batch=5) == 10  # two full batches and a part
    assert [r["seq"] for r in hub_store.search_access("app", {})[0]] == [11, 12]


def test_a_version_12_file_counts_its_records_as_received_when_they_happened(tmp_path):
    """Schema 13 adds when the hub received each access record (retention counts from it): the
    records of an older file count as received at their own time, as they were trimmed before,
    so the first trim after the upgrade neither keeps them a second term nor deletes them early."""
    from edge.door.access_log import AccessLog

    path = tmp_path / "hub.sqlite3"
    log = AccessLog(tmp_path / "door.db", b"k" * 32, clock=iter([100.0, 200.0]).__next__)
    for person in ("ann", "bob"):
        log.append("decision", door="main", person_id=person, decision="reject", outcome="deny", reason="r")
    store = SqliteStore(path)
    store.store_access_records("app", "edge-a", log.records())
    store.close()
    with sqlite3.connect(path) as conn:  # the file as schema 12 left it
        conn.execute("DROP INDEX access_records_received")
        conn.execute("ALTER TABLE access_records DROP COLUMN received")
        conn.execute("CREATE INDEX access_records_at ON access_records (at)")
        conn.execute("PRAGMA user_version = 12")
    store = SqliteStore(path)
    assert store.trim_access_log(150.0) == 1
    assert [r["person_id"] for r in store.search_access("app", {})[0]] == ["bob"]
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 13
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'access_records_at'").fetchone() is None
