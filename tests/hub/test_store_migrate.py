"""`edge-verifier hub migrate --from sqlite:///... --to postgresql://...` as a real command: the
PostgreSQL store then answers exactly like the SQLite one (same persons, faces, embeddings, crops,
credentials, the
same sync feed from any cursor, so the edges' cursors stay valid), new changes number after the
old ones, progress is shown, and a target holding data is refused."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np

from edge.core.credentials import Credential
from edge.core.syncwire import encode
from edge.hub.store import FaceRecord, Limits, SqliteStore, VerifyRecord, open_store
from edge.hub.store.edges import EdgeReport
from tests.conftest import ROOT

FP = "test-fp"


def face(face_id: str, person_id: str, rng) -> FaceRecord:
    return FaceRecord(face_id, person_id, (1, 2, 30, 40), [[1.5, 2.5]] * 5, yaw=3.0, quality=0.9, tag="t",
                      embeddings={FP: rng.normal(size=16).astype(np.float32),
                                  "other-fp": rng.normal(size=8).astype(np.float32)}, crop=rng.bytes(48))


def filled_sqlite(path) -> SqliteStore:
    rng = np.random.default_rng(7)
    store = SqliteStore(path)
    for app in ("app1", "app2"):
        for i in range(30):
            store.create_person(app, f"p{i}", [f"g{i % 3}"], f"name {i}", "tag", face(f"{app}-f{i}", f"p{i}", rng),
                                Limits())
            if i % 4 == 0:
                store.add_faces(app, f"p{i}", [face(f"{app}-f{i}b", f"p{i}", rng)], Limits())
        store.delete_person(app, "p5")
        store.set_info(app, "p6", "renamed", None)
        store.add_groups(app, "p7", ["g9"], Limits())
        store.add_groups(app, "p10", ["g2"], Limits())  # and out of g1: an edge of g1 is told to drop p10
        store.remove_groups(app, "p10", ["g1"])
        store.set_credentials(app, "p8", [Credential("h10301", 12345, facility=42), Credential("raw", 5, bits=4)])
    store.log_verify(VerifyRecord("s1", "app1", "p1", 0.7, 81.0, True, 1.0))
    store.lift_claims("app1", "p3", 1_800_000_000.5, "console:otto")
    # a single-use signature used just before the move, and a door's last report
    assert store.claim_signature(b"used-before-the-move", time.time() + 3600, time.time())
    store.record_edge("app1", EdgeReport("door-1", 1_800_000_000.0, 7, FP, "flag", "locked, mode normal", "ok",
                                         "edge", ("g1",)))
    return store


def wire(page) -> tuple:
    """A sync page as the edges receive it."""
    return [encode(c) for c in page.changes], page.cursor, page.has_more


def migrate(source, target) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "hub", "migrate", "--from", f"sqlite:///{source}",
                           "--to", target], capture_output=True, text=True, cwd=ROOT, timeout=120, check=False)


def test_migrated_store_answers_like_the_sqlite_one_and_sync_cursors_stay_valid(pg_url, tmp_path):
    path = tmp_path / "hub.sqlite3"
    lite = filled_sqlite(path)
    done = migrate(path, pg_url)
    assert done.returncode == 0, done.stderr
    assert "[migrate] faces: " in done.stderr and "rows checked equal" in done.stdout
    pg = open_store(pg_url)
    for app in ("app1", "app2"):
        assert pg.group_ids(app) == lite.group_ids(app)
        for g in lite.group_ids(app):
            assert pg.person_ids(app, g) == lite.person_ids(app, g)
        assert pg.get_person(app, "p6") == lite.get_person(app, "p6")
        assert pg.get_credentials(app, "p8") == lite.get_credentials(app, "p8") != []
        assert pg.last_seq(app) == lite.last_seq(app)
        for since in (0, lite.last_seq(app) // 2):  # an edge's cursor from before the move
            for groups in (None, ["g1"]):
                assert wire(pg.sync_page(app, since, FP, groups, 1000)) == wire(lite.sync_page(app, since, FP, groups,
                                                                                             1000))
        # who has been in which group came along: p10 (left g1) is a deletion there, p5 (g2) unseen
        g1 = [c for c in pg.sync_page(app, 0, FP, ["g1"], 1000).changes if c.deleted]
        assert {c.person_id for c in g1} == {"p10"}
        ours = sorted((e.person_id, e.face_id, e.embedding.tobytes(), e.group_ids)
                      for e in pg.embeddings(app, "other-fp"))
        theirs = sorted((e.person_id, e.face_id, e.embedding.tobytes(), e.group_ids)
                        for e in lite.embeddings(app, "other-fp"))
        assert ours == theirs
    assert pg.get_verify("s1") == lite.get_verify("s1")
    assert pg.claim_lifts("app1", 0) == lite.claim_lifts("app1", 0) == {"p3": (1_800_000_000.5, "console:otto")}
    # a signature used before the move stays used (it was good once more on the new store), and
    # the console's Doors page still lists the doors
    assert not pg.claim_signature(b"used-before-the-move", time.time() + 3600, time.time())
    assert pg.edge_reports("app1") == lite.edge_reports("app1") != []
    crops = [sorted(s.faces_to_embed("new-fp", "", 1000), key=lambda c: c.face_id) for s in (pg, lite)]
    assert crops[0] == crops[1] and len(crops[0]) == 2 * (29 + 8) and all(c.crop for c in crops[0])
    before = max(pg.last_seq("app1"), pg.last_seq("app2"))
    pg.set_info("app1", "p1", "after the move", None)
    assert pg.last_seq("app1") == before + 1  # the sequence continues after the copied numbers
    pg.close()
    lite.close()


def test_a_file_of_older_code_is_brought_up_to_date_and_moved_whole(pg_url, tmp_path):
    """A file the hub before schema 11 wrote has no record of who was in which group: migrated
    as it is, the copy had none either (the edges of a group never told of a deletion). It is
    brought up to date first, as the hub does when it opens it: its persons as of any group."""
    import sqlite3

    path = tmp_path / "hub.sqlite3"
    filled_sqlite(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE group_members_seen")
        conn.execute("PRAGMA user_version = 10")
    done = migrate(path, pg_url)
    assert done.returncode == 0, done.stderr
    pg, lite = open_store(pg_url), SqliteStore(path)
    try:
        for groups in (["g1"], ["g0"]):
            page = pg.sync_page("app1", 0, FP, groups, 1000)
            assert wire(page) == wire(lite.sync_page("app1", 0, FP, groups, 1000))
            assert {c.person_id for c in page.changes if c.deleted} >= {"p5", "p10"}  # any of them may be held
    finally:
        pg.close()
        lite.close()
    assert migrate(tmp_path / "none.sqlite3", pg_url).returncode == 1
    assert not (tmp_path / "none.sqlite3").exists()


def test_a_target_holding_data_is_refused(pg_url, tmp_path):
    path = tmp_path / "hub.sqlite3"
    filled_sqlite(path).close()
    assert migrate(path, pg_url).returncode == 0
    again = migrate(path, pg_url)
    assert again.returncode == 1 and "already holds persons" in again.stderr
    pg = open_store(pg_url)
    assert len(pg.person_ids("app1", "g0")) == 10  # nothing copied twice
    pg.close()


def test_a_password_on_the_command_line_is_refused(tmp_path):
    """`hub migrate --to postgresql://user:password@...` put the database's password where every
    local user reads it (ps, /proc/<pid>/cmdline) and in the shell's history. Refused, pointing to
    ~/.pgpass, before anything is opened; the password is not echoed."""
    source = tmp_path / "hub.sqlite3"
    source.write_bytes(b"")  # never opened: the --to is refused first
    done = migrate(source, "postgresql://edge:Secret42@127.0.0.1:9/hub")
    assert done.returncode == 1 and "~/.pgpass" in done.stderr
    assert "Secret42" not in done.stdout + done.stderr
