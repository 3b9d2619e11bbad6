"""`Store` on one SQLite file: WAL, foreign keys, a busy timeout, a schema version.

synchronous=FULL: an enrolment the client was told succeeded (it got a face_id) must survive a
power cut, and writes are rare next to reads; in WAL mode FULL costs one fsync per commit.
Each thread gets its own connection so readers run in parallel with the single writer (WAL);
writers take the lock up front (BEGIN IMMEDIATE) so two writers never deadlock on upgrade.
The file is created mode 0600 (SQLite gives the -wal and -shm files the same mode). Any
sqlite3 error but a constraint violation is a storage failure: ApiError -1200, remembered for
`health()` until a write succeeds.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edge.core.errors import StoreUnavailable
from edge.core.sqlitedb import DamagedDatabase, create_private, transaction
from edge.hub.store.access import SQLITE_SCHEMA as ACCESS_SCHEMA
from edge.hub.store.access import add_counted_column, add_received_column
from edge.hub.store.claim_lifts import SQLITE_SCHEMA as LIFTS_SCHEMA
from edge.hub.store.console import SQLITE_SCHEMA as CONSOLE_SCHEMA
from edge.hub.store.edges import SQLITE_SCHEMA as EDGES_SCHEMA
from edge.hub.store.edges import add_columns
from edge.hub.store.sql import SEEN_BEFORE_KEPT, SqlStore

log = logging.getLogger(__name__)

# 2: face_crops (a file of version 1 gets the table at open; older code refuses a version 2 file)
# 3: credentials (likewise: an older file gets the table at open)
# 4: the console's accounts, sessions and login failures (edge.hub.store.console), likewise
# 5: access rules and the edges' access log (edge.hub.store.access), likewise
# 6: what each edge reports when it syncs (edge.hub.store.edges), likewise
# 7: the access log's sealed face crops (access_crops in edge.hub.store.access), likewise
# 8: the lifts of claim lockouts (edge.hub.store.claim_lifts), likewise
# 9: the kind of hub key each edge synced with (edge_reports.key: edges.add_columns adds it)
# 10: the groups each edge's sync asked for (edge_reports.groups: edges.add_columns)
# 11: the groups each person has ever been in (group_members_seen; an older file's persons get
#     the group '', any: see SqlStore.sync_page)
# 12: each access record's lockout mark in a column (access_records.counted: access.add_counted_column)
# 13: when the hub received each access record (access_records.received: access.add_received_column),
#     which retention counts from
SCHEMA_VERSION = 13

_SCHEMA = """
CREATE TABLE IF NOT EXISTS persons (
    appid TEXT NOT NULL, person_id TEXT NOT NULL,
    person_name TEXT NOT NULL DEFAULT '', tag TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    PRIMARY KEY (appid, person_id)
);
CREATE TABLE IF NOT EXISTS groups (
    appid TEXT NOT NULL, group_id TEXT NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (appid, group_id)
);
CREATE TABLE IF NOT EXISTS person_groups (
    appid TEXT NOT NULL, person_id TEXT NOT NULL, group_id TEXT NOT NULL,
    PRIMARY KEY (appid, person_id, group_id),
    FOREIGN KEY (appid, person_id) REFERENCES persons (appid, person_id) ON DELETE CASCADE,
    FOREIGN KEY (appid, group_id) REFERENCES groups (appid, group_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS person_groups_by_group ON person_groups (appid, group_id);
CREATE TABLE IF NOT EXISTS faces (
    face_id TEXT PRIMARY KEY, appid TEXT NOT NULL, person_id TEXT NOT NULL,
    x INTEGER NOT NULL, y INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    landmarks TEXT NOT NULL, yaw REAL NOT NULL, pitch REAL NOT NULL, roll REAL NOT NULL,
    quality REAL NOT NULL, sharpness REAL NOT NULL, tag TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    FOREIGN KEY (appid, person_id) REFERENCES persons (appid, person_id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS faces_by_person ON faces (appid, person_id);
CREATE TABLE IF NOT EXISTS embeddings (
    face_id TEXT NOT NULL REFERENCES faces (face_id) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (face_id, fingerprint)
);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    appid TEXT NOT NULL, kind TEXT NOT NULL, person_id TEXT NOT NULL, face_id TEXT,
    time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_by_appid ON changes (appid, seq);
CREATE INDEX IF NOT EXISTS changes_by_kind ON changes (appid, kind, seq);
CREATE TABLE IF NOT EXISTS verify_log (
    session_id TEXT PRIMARY KEY, appid TEXT NOT NULL, person_id TEXT NOT NULL,
    score REAL NOT NULL, confidence REAL NOT NULL, ismatch INTEGER NOT NULL, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS verify_log_by_time ON verify_log (time);
CREATE TABLE IF NOT EXISTS used_signatures (
    key BLOB PRIMARY KEY, valid_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS used_signatures_by_expiry ON used_signatures (valid_until);
CREATE TABLE IF NOT EXISTS signatures_forgotten (id INTEGER PRIMARY KEY CHECK (id = 1), until REAL NOT NULL);
INSERT INTO signatures_forgotten (id, until) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS face_crops (
    face_id TEXT PRIMARY KEY REFERENCES faces (face_id) ON DELETE CASCADE, crop BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS credentials (
    appid TEXT NOT NULL, person_id TEXT NOT NULL, position INTEGER NOT NULL, credential TEXT NOT NULL,
    PRIMARY KEY (appid, person_id, position),
    FOREIGN KEY (appid, person_id) REFERENCES persons (appid, person_id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX IF NOT EXISTS credentials_unique ON credentials (appid, credential);
CREATE TABLE IF NOT EXISTS group_members_seen (
    appid TEXT NOT NULL, group_id TEXT NOT NULL, person_id TEXT NOT NULL,
    PRIMARY KEY (appid, person_id, group_id)
);
"""



def _statements(script: str) -> list[str]:
    """The SQL statements of `script`, one by one (executescript would commit the transaction
    they run in)."""
    out, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"an incomplete SQL statement in the schema: {current.strip()[:60]}")
    return [statement for statement in out if statement.rstrip(";").strip()]


class SqliteStore(SqlStore):
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0, synchronous: str = "FULL"):
        self.path = str(path)
        create_private(self.path)
        self._failure: tuple[float, str] | None = None  # (when, why) of the last failed write
        self._busy = busy_timeout_s
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        try:
            conn = self._conn()
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the schema page
        except sqlite3.DatabaseError as exc:
            self.close()
            raise DamagedDatabase(Path(self.path), exc) from None
        if version > SCHEMA_VERSION:
            raise StoreUnavailable(f"{self.path}: schema version {version} is newer than this code ({SCHEMA_VERSION})")
        if 0 < version < SCHEMA_VERSION:
            log.warning("%s: upgrading the store from schema %d to %d (minutes for a large access log on a Pi: "
                        "let it finish; stopped, it starts again from the old schema)", self.path, version,
                        SCHEMA_VERSION)
        # One transaction: the upgrade ran statement by statement, and a process killed between
        # adding access_records.counted and filling it left the column empty for good (the next
        # start saw the column and skipped the fill): the stored refusals no longer counted.
        conn.execute("BEGIN IMMEDIATE")
        try:
            add_counted_column(conn)  # before ACCESS_SCHEMA's indexes on them
            add_received_column(conn)
            for statement in _statements(_SCHEMA + CONSOLE_SCHEMA + ACCESS_SCHEMA + EDGES_SCHEMA + LIFTS_SCHEMA):
                conn.execute(statement)
            add_columns(conn)
            if version < 11:  # (a new file has no changes: nothing to add)
                conn.execute(SEEN_BEFORE_KEPT)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # --- connections and transactions -----------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=self._busy, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute(f"PRAGMA busy_timeout={int(self._busy * 1000)}")
            self._local.conn = conn
            with self._all_lock:
                self._all.append(conn)
        return conn

    @contextmanager
    def _write(self, appid: str | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction (`appid` unused: SQLite has one writer at a time anyway)."""
        with self._storage_errors("write"), transaction(self._conn()) as conn:
            yield conn
        self._failure = None

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One snapshot for several SELECTs (WAL readers see a consistent state)."""
        with self._storage_errors("read"), transaction(self._conn(), immediate=False) as conn:
            yield conn

    def _driver_errors(self) -> tuple:
        return sqlite3.IntegrityError, sqlite3.DataError, sqlite3.Error

    def health(self) -> dict:
        out = super().health()
        if self.path != ":memory:":
            stat = os.statvfs(Path(self.path).parent)
            out["free_bytes"] = stat.f_bavail * stat.f_frsize
        return out

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                try:
                    conn.close()
                except sqlite3.ProgrammingError:
                    pass
            self._all.clear()
        self._local = threading.local()

    def _executemany(self, c: sqlite3.Connection, text: str, rows: list) -> None:
        c.executemany(text, rows)
