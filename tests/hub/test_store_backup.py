"""`hub backup`: a consistent copy of a running hub's SQLite store. `cp hub.sqlite3` while the hub
ran missed what was still in its -wal file: a person deleted a moment before came back in the
copy. A real hub on loopback serving while the backup is taken; the copy opened as a store."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
from contextlib import closing

import pytest

from edge.hub.store import SqliteStore
from tests.support.hub import APPID, hub_with_five_enrolled


def _backup(config, target) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "hub", "backup", "--config", str(config), "--to",
                           str(target)], capture_output=True, text=True, timeout=120)


def _config(tmp_path, store_path):
    from edge.dev.devstack import write_toml

    return write_toml(tmp_path / "hub.toml", {"storage": {"path": str(store_path)}, "credentials": [
        {"appid": "a", "secret_id": "AKIDbackup", "secret_key": "s" * 40}]}, private=True)


def test_a_backup_of_a_running_hub_holds_what_it_answered(tmp_path, faces_dir):
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub, closing(hub.client(timeout=30)) as client:
        config = _config(tmp_path, hub.store_path)
        client.delperson("madonna")  # answered; still in the -wal file
        shutil.copy(hub.store_path, tmp_path / "copied.sqlite3")  # what `cp` takes
        done = _backup(config, tmp_path / "backup.sqlite3")
        assert done.returncode == 0, done.stderr
        assert "checked" in done.stdout and "secrets file" in done.stdout and "pages" in done.stderr
        assert hub.secret_key not in done.stdout + done.stderr
        again = _backup(config, tmp_path / "backup.sqlite3")  # never over an existing file
        assert again.returncode == 1 and "exists" in again.stderr
    assert stat.S_IMODE((tmp_path / "backup.sqlite3").stat().st_mode) == 0o600
    assert not (tmp_path / "backup.sqlite3-wal").exists()
    copied = SqliteStore(tmp_path / "copied.sqlite3")
    backed_up = SqliteStore(tmp_path / "backup.sqlite3")
    def staff(store) -> list[str]:
        return store.person_ids(APPID, "staff") if "staff" in store.group_ids(APPID) else []

    try:
        # cp took the file without its -wal: what the hub answered is not in it (here even the
        # enrolment; a deletion a moment before comes back the same way)
        assert staff(copied) != staff(backed_up)
        assert sorted(staff(backed_up)) == ["ben_afflek", "elton_john", "jerry_seinfield", "mindy_kaling"]
    finally:
        copied.close()
        backed_up.close()


def test_a_postgresql_store_is_pointed_to_pg_dump(tmp_path):
    from edge.dev.devstack import write_toml

    cfg = write_toml(tmp_path / "hub.toml", {"storage": {"url": "postgresql://hub@127.0.0.1:1/hub"},
                                             "credentials": [{"appid": "a", "secret_id": "AKIDx",
                                                              "secret_key": "s" * 40}]}, private=True)
    done = _backup(cfg, tmp_path / "b.sqlite3")
    assert done.returncode == 1 and "pg_dump" in done.stderr and not (tmp_path / "b.sqlite3").exists()


@pytest.mark.parametrize("what", ["missing"])
def test_no_store_is_a_clear_error(tmp_path, what):
    from edge.hub.backup import BackupError, backup_sqlite

    with pytest.raises(BackupError, match="no such store"):
        backup_sqlite(tmp_path / "none.sqlite3", tmp_path / "b.sqlite3")


def test_a_backup_ends_while_the_hub_writes_all_the_time(tmp_path):
    """Copied 4 MiB a step, the backup started again from page 0 whenever the hub wrote between
    two steps (each door's sync report, each upload): on a busy hub it never ended, its progress
    going back without a word. One read snapshot now, the writer going on beside it."""
    import sqlite3
    import threading
    import time

    from edge.hub.backup import backup_sqlite

    store = tmp_path / "hub.sqlite3"
    with closing(sqlite3.connect(store)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE filler (blob BLOB)")
        conn.execute("CREATE TABLE reports (edge TEXT PRIMARY KEY, at REAL)")
        conn.executemany("INSERT INTO filler VALUES (randomblob(4096))", [()] * 10_000)  # ~40 MiB
        conn.commit()
    stop, writes = threading.Event(), [0]

    def door_reports() -> None:
        with closing(sqlite3.connect(store, timeout=10)) as conn:
            while not stop.is_set():
                conn.execute("INSERT INTO reports VALUES ('door-1', ?)"
                             " ON CONFLICT (edge) DO UPDATE SET at = excluded.at", (time.time(),))
                conn.commit()
                writes[0] += 1
                time.sleep(0.005)

    writer = threading.Thread(target=door_reports, daemon=True)
    writer.start()
    done: list[int] = []
    copier = threading.Thread(target=lambda: done.append(backup_sqlite(store, tmp_path / "b.sqlite3")), daemon=True)
    copier.start()
    copier.join(60)
    stop.set()
    writer.join(10)
    assert done and done[0] > 40 * 2**20, "the backup did not end within 60 s while the hub wrote"
    assert writes[0] > 10  # the writer was not held back
    with closing(sqlite3.connect(tmp_path / "b.sqlite3")) as copy:
        assert copy.execute("SELECT count(*) FROM filler").fetchone()[0] == 10_000


def test_a_store_path_with_a_hash_or_question_mark_is_the_store_copied(tmp_path):
    """The path went into a file: URI as it was: after a '#' it was a fragment, and an empty
    database opened read-write beside it was copied, checked sound, and the backup said done."""
    import sqlite3

    from edge.hub.backup import backup_sqlite

    folder = tmp_path / "site#1?a"
    folder.mkdir()
    with closing(sqlite3.connect(folder / "hub.sqlite3")) as conn:
        conn.execute("CREATE TABLE persons (id TEXT)")
        conn.execute("INSERT INTO persons VALUES ('ann')")
        conn.commit()
    backup_sqlite(folder / "hub.sqlite3", tmp_path / "b.sqlite3")
    with closing(sqlite3.connect(tmp_path / "b.sqlite3")) as copy:
        assert copy.execute("SELECT id FROM persons").fetchall() == [("ann",)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.sqlite3", "site#1?a"]  # nothing made beside it
