"""PostgresStore on a throwaway cluster: the schema migrations (versioned, applied once even
when several hub processes start together, a newer schema refused) and the store's basics."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge.core.errors import ApiError
from edge.hub.store import FaceRecord, Limits, open_store
from edge.hub.store.sql import SIGNATURE_CLOCK_GRACE_S

FP = "test-fp"


def face(face_id: str, person_id: str, seed: int = 0) -> FaceRecord:
    vec = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    return FaceRecord(face_id, person_id, (1, 2, 30, 40), [[1.0, 2.0]] * 5, embeddings={FP: vec})


def test_schema_is_migrated_once_even_by_processes_starting_together(pg_url):
    import psycopg

    from edge.hub.store.postgres import PostgresStore, migrations

    stores, failures = [], []

    def start():
        try:
            stores.append(PostgresStore(pg_url, pool_size=2))
        except (psycopg.Error, RuntimeError) as exc:  # surfaced below
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not failures and len(stores) == 4
    versions = [v for v, _, _ in migrations()]
    applied = sorted(v for s in stores for v in s.applied_migrations)
    assert applied == versions  # each version applied by exactly one of them
    again = PostgresStore(pg_url)
    assert again.applied_migrations == []
    for s in [*stores, again]:
        s.close()


def test_a_database_migrated_by_newer_code_is_refused(pg_url):
    import psycopg

    from edge.hub.store.postgres import PostgresStore

    PostgresStore(pg_url).close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name, applied) VALUES (9999, 'future', 0)")
    with pytest.raises(RuntimeError, match="newer than this code"):
        PostgresStore(pg_url)


def test_open_store_picks_the_backend_from_the_url(pg_url, tmp_path):
    from edge.hub.store import SqliteStore
    from edge.hub.store.postgres import PostgresStore

    pg = open_store(pg_url)
    lite = open_store(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    default = open_store("", str(tmp_path / "b.sqlite3"))
    assert isinstance(pg, PostgresStore) and isinstance(lite, SqliteStore) and isinstance(default, SqliteStore)
    assert (tmp_path / "a.sqlite3").exists() and (tmp_path / "b.sqlite3").exists()
    for s in (pg, lite, default):
        s.close()
    with pytest.raises(ValueError, match="expected sqlite"):
        open_store("mysql://u:secret@h/db")


def test_a_url_libpq_cannot_read_never_puts_its_password_in_the_log(capfd, caplog):
    """A password with an unencoded % (`pa%ssw0rd`): the pool's connection thread logged libpq's
    `invalid percent-encoded token: "pa%ssw0rd"` to the journal. Refused before any connection."""
    with pytest.raises(RuntimeError, match="percent-encode") as refused:
        open_store("postgresql://edge:pa%ssw0rd@127.0.0.1:9/hub")
    assert "ssw0rd" not in str(refused.value)
    time.sleep(0.5)  # a pool thread, had one started, would have logged by now
    seen = capfd.readouterr()
    assert "ssw0rd" not in seen.out + seen.err + caplog.text


def test_a_password_with_an_unencoded_at_sign_is_refused_before_any_connection(capfd, caplog):
    """`postgresql://edge:p@ss@host/db` parses (libpq takes `ss@host` for the host): the pool
    logged "failed to resolve host 'ss@127.0.0.1'", the password's tail, at every retry."""
    with pytest.raises(RuntimeError, match="percent-encode") as refused:
        open_store("postgresql://edge:Super@Secret42@127.0.0.1:9/hub")
    assert "Secret42" not in str(refused.value)
    time.sleep(0.5)  # a pool thread, had one started, would have logged by now
    seen = capfd.readouterr()
    assert "Secret42" not in seen.out + seen.err + caplog.text


def test_limits_and_rollback_on_postgresql(pg_url):
    store = open_store(pg_url)
    store.create_person("app", "p", ["g"], "n", "t", face("f0", "p"), Limits(faces_per_person=2))
    store.add_faces("app", "p", [face("f1", "p", 1)], Limits(faces_per_person=2))
    with pytest.raises(ApiError) as err:
        store.add_faces("app", "p", [face("f2", "p", 2)], Limits(faces_per_person=2))
    assert err.value.code == -1309
    with pytest.raises(ApiError) as err:  # the person insert is rolled back with the refused group
        store.create_person("app", "q", ["g2"], "", "", face("f3", "q"), Limits(groups_per_appid=1))
    assert err.value.code == -1311
    assert store.group_ids("app") == ["g"] and store.person_ids("app", "g") == ["p"]
    assert store.face_ids("app", "p") == ["f0", "f1"]
    page = store.sync_page("app", 0, FP, None, 10)
    assert [type(c).__name__ for c in page.changes] == ["PersonChange", "FaceChange", "FaceChange"]
    assert not page.has_more and page.changes[1].embedding.shape == (8,)
    store.close()


def test_a_single_use_signature_is_claimed_once_across_processes_sharing_the_database(pg_url):
    from edge.hub.store.postgres import PostgresStore

    stores = [PostgresStore(pg_url, pool_size=4) for _ in range(2)]  # two processes' pools
    keys = [f"sig-{i}".encode() for i in range(30)]
    wins: list[bytes] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claim(store):
        start.wait()
        for key in keys:
            if store.claim_signature(key, valid_until=2000.0, now=1000.0):
                with lock:
                    wins.append(key)

    threads = [threading.Thread(target=claim, args=(stores[i % 2],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(wins) == sorted(keys)  # each key won exactly once
    assert stores[0].claim_signature(b"sig-0", 2500.0, now=1999.0) is False  # still valid: a replay
    # a process whose clock runs ahead of the one that took it (here by 60 s) still refuses it
    assert stores[1].claim_signature(b"sig-0", 3000.0, now=2000.0 + 60) is False
    # expired past the clocks' grace: may be taken over
    assert stores[1].claim_signature(b"sig-0", 3000.0, now=2000.0 + SIGNATURE_CLOCK_GRACE_S) is True
    for s in stores:
        s.close()


def test_a_process_with_its_clock_ahead_does_not_forget_another_process_used_signature(pg_url):
    """Rows were deleted by the calling process's clock: a process 2 s ahead, serving another
    single-use request, deleted a row another process still took as valid, and a replay of
    that signature passed there."""
    from edge.hub.store.postgres import PostgresStore

    behind, ahead = PostgresStore(pg_url, pool_size=2), PostgresStore(pg_url, pool_size=2)
    try:
        assert behind.claim_signature(b"used", valid_until=1060.0, now=1000.0)
        assert ahead.claim_signature(b"other", valid_until=1122.0, now=1062.0)  # deletes what it takes as expired
        assert behind.claim_signature(b"used", valid_until=1060.0, now=1059.0) is False  # the replay
    finally:
        behind.close()
        ahead.close()


def test_a_lost_database_is_storage_error_1200_and_health_says_so(pg_url, caplog):
    """The driver's text (it names the database's host or socket, port and user) goes to the
    log only: it was in the answer, which any key gets (a door's too), and in /health."""
    import psycopg

    store = open_store(pg_url)
    assert store.health() == {"ok": True}
    with psycopg.connect(pg_url, autocommit=True) as admin:  # the server drops every connection
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                      " WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(ApiError) as err:
        store.set_info("app", "nobody", "x", None)
    assert err.value.code == -1200
    assert store.health()["ok"] is False and "storage" not in store.health()["error"]
    driver_said = [r.getMessage() for r in caplog.records if r.name == "edge.hub.store.sql"]
    assert driver_said and "terminat" in driver_said[0]  # the server's own words, logged
    assert "terminat" not in err.value.message and "terminat" not in store.health()["error"]
    store.create_person("app", "p", ["g"], "", "", face("f0", "p"), Limits())  # the pool reconnects
    assert store.health() == {"ok": True}
    store.close()


def test_the_test_cluster_takes_no_tcp_connection(pg_url):
    """The throwaway cluster trusts whoever reaches it: on 127.0.0.1 any local user could log in
    as its superuser while `make test` ran (COPY ... FROM PROGRAM runs commands). Its socket lives
    in a private folder now, and nothing listens on TCP."""
    import socket
    from urllib.parse import unquote, urlsplit

    where = urlsplit(pg_url)
    assert unquote(where.hostname or "").startswith("/")  # a socket's folder, not an address
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", where.port), timeout=5).close()
    store = open_store(pg_url)  # and the hub reaches it as ever
    store.close()


def test_one_appid_waiting_for_its_writer_lock_leaves_connections_for_the_others(pg_url):
    """A writer holds its pooled connection while it waits for its appid's lock: one appid's
    writes queued behind that lock (a door key re-sending its access log in a loop) took all
    of a process's connections, and every other tenant's request, the rate limiter's too,
    failed with -1200 after the pool's timeout. An appid now waits on at most a share of them."""
    import psycopg

    from edge.hub.store.edges import EdgeReport
    from edge.hub.store.postgres import APPID_LOCK, PostgresStore

    store = PostgresStore(pg_url, pool_size=10, connect_timeout_s=3.0)
    holder = psycopg.connect(pg_url)  # another process in the middle of appid A's long write
    holder.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (APPID_LOCK, "A"))
    outcomes: list[str] = []

    def sync_report() -> None:
        try:
            store.record_edge("A", EdgeReport("e1", time.time(), 0, "fp", "flag", "", "ok"))
            outcomes.append("stored")
        except ApiError as exc:
            outcomes.append(str(exc.code))

    writers = [threading.Thread(target=sync_report) for _ in range(10)]
    try:
        for w in writers:
            w.start()
        time.sleep(1.0)  # every writer of A is queued by now
        started = time.monotonic()
        assert store.rate_limiter(50, 100).allow("B")  # another tenant is served at once
        with store._write("B") as conn:
            conn.execute("SELECT 1")
        assert time.monotonic() - started < 2.0
        assert store.health()["ok"]
    finally:
        holder.rollback()
        holder.close()
        for w in writers:
            w.join(30)
        store.close()
    # A's writers past its share were told to retry (-15), not that the store failed; the rest stored
    assert set(outcomes) <= {"15", "stored"} and "stored" in outcomes


def test_the_counted_migration_reads_bodies_holding_an_escaped_nul(pg_url, monkeypatch):
    """A record's detail may hold a NUL (the edge's text, stored as sent: JSON `\\u0000` in the
    body), which jsonb refuses: one such record made migration 0012 fail, and with it every hub
    process's start at the upgrade."""
    import json

    import psycopg

    from edge.hub.store import postgres

    every = postgres.migrations()
    monkeypatch.setattr(postgres, "migrations", lambda: [m for m in every if m[0] < 12])
    with psycopg.connect(pg_url) as conn:
        postgres.migrate(conn)
        for seq, detail in ((1, {"claim_lockout": "refused", "text": "a\x00b"}), (2, {"text": "\\u0000 as text"})):
            body = json.dumps({"seq": seq, "kind": "decision", "detail": detail})
            assert "\\u0000" in body
            conn.execute("INSERT INTO access_records VALUES ('app', 'e1', %s, %s, 1.8e9, 'decision', 'front',"
                         " 'p1', 'reject', 'deny', 'x', 'h', %s)", (seq, f"r{seq}", body))
        conn.commit()
    monkeypatch.setattr(postgres, "migrations", lambda: every)
    with psycopg.connect(pg_url) as conn:
        assert postgres.migrate(conn) == [m[0] for m in every if m[0] >= 12]
        counted = conn.execute("SELECT seq, counted, body FROM access_records ORDER BY seq").fetchall()
    assert [(seq, mark) for seq, mark, _ in counted] == [(1, "refused"), (2, "")]
    assert json.loads(counted[0][2])["detail"]["text"] == "a\x00b"  # the body itself is kept as sent


def test_a_store_that_cannot_be_opened_is_said_in_one_line(tmp_path):
    """A PostgreSQL store that did not answer, or a store of newer code, ended the hub's start
    (and any hub command) in a Python traceback: it is one line naming the store, exit 1."""
    import sqlite3
    import subprocess
    import sys

    from edge.core.errors import StoreUnavailable
    from edge.hub.store.postgres import PostgresStore

    with pytest.raises(StoreUnavailable, match=r"postgresql://\*\*\*@127.0.0.1:9/hub did not answer within 1 s"):
        PostgresStore("postgresql://edge:Secret42@127.0.0.1:9/hub", connect_timeout_s=1)
    newer = tmp_path / "hub.sqlite3"
    with sqlite3.connect(newer) as db:
        db.execute("PRAGMA user_version = 999")
    config = tmp_path / "hub.toml"
    config.write_text(f'[storage]\npath = "{newer}"\nkeep_face_crops = false\n[[credentials]]\nappid = "1"\n'
                      'secret_id = "AKIDnewer0001"\nsecret_key = "a-real-generated-key-0123456789"\n')
    config.chmod(0o600)
    done = subprocess.run([sys.executable, "-m", "edge", "hub", "--config", str(config)], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "schema version 999 is newer than this code" in done.stderr


def test_a_writer_lock_held_by_a_stalled_session_makes_writes_busy_not_hung(pg_url):
    """A hub process stopped (or cut off) inside a transaction held its appid's writer lock, idle:
    every write of that appid waited for good, each past its client's timeout, and the hub then
    ignored SIGTERM for their threads. A lock waited for 5 s is busy (code 15, health still ok);
    the stalled session is ended by the server after 60 s idle in its transaction."""
    import psycopg

    from edge.core import errors
    from edge.hub.store.postgres import APPID_LOCK, SESSION_LIMITS

    store = open_store(pg_url)
    try:
        with psycopg.connect(pg_url) as stalled:  # another process's session, mid-transaction
            stalled.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (APPID_LOCK, "lockheld"))
            started = time.monotonic()
            with pytest.raises(ApiError) as busy:
                store.create_person("lockheld", "p", ["g"], "n", "t", face("f0", "p"), Limits())
            assert busy.value.code == errors.RATE_LIMITED and store.health()["ok"]
            assert 4 <= time.monotonic() - started < 15
            stalled.rollback()
        store.create_person("lockheld", "p", ["g"], "n", "t", face("f0", "p"), Limits())  # free again
        with store._pool.connection() as conn:  # what every pooled session has
            shown = {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in SESSION_LIMITS}
        assert shown == {"lock_timeout": "5s", "idle_in_transaction_session_timeout": "1min",
                         "statement_timeout": "2min"}
    finally:
        store.close()


def test_a_sites_own_session_settings_win_over_the_hubs_limits(pg_url):
    """The hub's session limits overrode what a site set itself (a longer statement_timeout for a
    large site in the url's options, its own keepalives): they apply only where none is set."""
    from urllib.parse import quote

    sep = "&" if "?" in pg_url else "?"
    url = f"{pg_url}{sep}options={quote('-c statement_timeout=300s -c lock_timeout=0')}&keepalives_idle=120"
    store = open_store(url)
    try:
        with store._pool.connection() as conn:
            assert conn.execute("SHOW statement_timeout").fetchone()[0] == "5min"
            assert conn.execute("SHOW lock_timeout").fetchone()[0] == "0"  # a 0 set on purpose is kept
            assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "1min"  # the hub's
            assert conn.info.get_parameters()["keepalives_idle"] == "120"  # the others the hub's
            assert conn.info.get_parameters()["keepalives_interval"] == "10"
    finally:
        store.close()
