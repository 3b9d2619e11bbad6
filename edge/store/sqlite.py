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

import json
import os
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from edge import errors
from edge.errors import ApiError
from edge.matcher import Enrolled
from edge.sqlitedb import create_private, transaction
from edge.store.base import (
    Change,
    FaceChange,
    FaceRecord,
    Limits,
    NearIdentical,
    PersonChange,
    PersonRecord,
    Store,
    SyncPage,
    VerifyRecord,
)
from edge.store.crops import FaceCropSql

# 2: face_crops (a file of version 1 gets the table at open; older code refuses a version 2 file)
SCHEMA_VERSION = 2

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
CREATE TABLE IF NOT EXISTS verify_log (
    session_id TEXT PRIMARY KEY, appid TEXT NOT NULL, person_id TEXT NOT NULL,
    score REAL NOT NULL, confidence REAL NOT NULL, ismatch INTEGER NOT NULL, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS verify_log_by_time ON verify_log (time);
CREATE TABLE IF NOT EXISTS used_signatures (
    key BLOB PRIMARY KEY, valid_until REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS used_signatures_by_expiry ON used_signatures (valid_until);
CREATE TABLE IF NOT EXISTS face_crops (
    face_id TEXT PRIMARY KEY REFERENCES faces (face_id) ON DELETE CASCADE, crop BLOB NOT NULL
);
"""


def _blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def _vector(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f4").astype(np.float32)


class SqliteStore(FaceCropSql, Store):
    def __init__(self, path: str | Path, *, busy_timeout_s: float = 10.0, synchronous: str = "FULL"):
        self.path = str(path)
        create_private(self.path)
        self._failure: tuple[float, str] | None = None  # (when, why) of the last failed write
        self._busy = busy_timeout_s
        self._synchronous = synchronous
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        conn = self._conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this code ({SCHEMA_VERSION})")
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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

    @contextmanager
    def _storage_errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.IntegrityError:
            raise  # a broken invariant is a bug, not a storage failure
        except sqlite3.Error as exc:
            message = f"{type(exc).__name__}: {exc}"
            if what == "write":
                self._failure = (time.time(), message)
            raise ApiError(errors.FEATURE_STORAGE, f"storage {what} failed: {message}") from None

    def health(self) -> dict:
        out: dict = {"ok": self._failure is None}
        if self._failure is not None:
            out.update(error=self._failure[1], failing_since=round(self._failure[0], 1))
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

    # --- helpers --------------------------------------------------------------------------
    @staticmethod
    def _log(c: sqlite3.Connection, appid: str, kind: str, person_id: str, face_id: str | None = None) -> None:
        c.execute(
            "INSERT INTO changes (appid, kind, person_id, face_id, time) VALUES (?, ?, ?, ?, ?)",
            (appid, kind, person_id, face_id, time.time()),
        )

    def _log_person_and_faces(self, c: sqlite3.Connection, appid: str, person_id: str) -> None:
        self._log(c, appid, "person", person_id)
        for (face_id,) in c.execute(
            "SELECT face_id FROM faces WHERE appid = ? AND person_id = ? ORDER BY created, face_id",
            (appid, person_id),
        ).fetchall():
            self._log(c, appid, "face", person_id, face_id)

    @staticmethod
    def _require_person(c: sqlite3.Connection, appid: str, person_id: str) -> None:
        if c.execute("SELECT 1 FROM persons WHERE appid = ? AND person_id = ?", (appid, person_id)).fetchone() is None:
            raise ApiError(errors.PERSON_UNKNOWN, f"person {person_id!r} does not exist")

    @staticmethod
    def _join_groups(c: sqlite3.Connection, appid: str, person_id: str, group_ids: Sequence[str],
                     limits: Limits) -> list[str]:
        now = time.time()
        existing = {
            g for (g,) in c.execute(
                "SELECT group_id FROM person_groups WHERE appid = ? AND person_id = ?", (appid, person_id)
            )
        }
        wanted = [g for g in dict.fromkeys(group_ids) if g not in existing]
        known = {
            g for (g,) in c.execute("SELECT group_id FROM groups WHERE appid = ?", (appid,))
        }
        new_groups = [g for g in wanted if g not in known]
        if len(known) + len(new_groups) > limits.groups_per_appid:
            raise ApiError(errors.TOO_MANY_GROUPS, f"at most {limits.groups_per_appid} groups per appid")
        for g in wanted:
            if g in known:
                (count,) = c.execute(
                    "SELECT COUNT(*) FROM person_groups WHERE appid = ? AND group_id = ?", (appid, g)
                ).fetchone()
                if count >= limits.persons_per_group:
                    raise ApiError(errors.TOO_MANY_PERSONS,
                                   f"group {g!r} already has {limits.persons_per_group} persons")
        for g in new_groups:
            c.execute("INSERT INTO groups (appid, group_id, created) VALUES (?, ?, ?)", (appid, g, now))
        c.executemany(
            "INSERT INTO person_groups (appid, person_id, group_id) VALUES (?, ?, ?)",
            [(appid, person_id, g) for g in wanted],
        )
        return wanted

    @staticmethod
    def _drop_empty_groups(c: sqlite3.Connection, appid: str) -> None:
        c.execute(
            "DELETE FROM groups WHERE appid = ? AND NOT EXISTS (SELECT 1 FROM person_groups pg "
            "WHERE pg.appid = groups.appid AND pg.group_id = groups.group_id)",
            (appid,),
        )

    def _insert_face(self, c: sqlite3.Connection, appid: str, face: FaceRecord) -> None:
        x, y, w, h = (int(v) for v in face.box)
        c.execute(
            "INSERT INTO faces (face_id, appid, person_id, x, y, width, height, landmarks, yaw, pitch, roll,"
            " quality, sharpness, tag, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                face.face_id, appid, face.person_id, x, y, w, h, json.dumps(face.landmarks),
                float(face.yaw), float(face.pitch), float(face.roll), float(face.quality),
                float(face.sharpness), face.tag, face.created or time.time(),
            ),
        )
        c.executemany(
            "INSERT INTO embeddings (face_id, fingerprint, vector) VALUES (?, ?, ?)",
            [(face.face_id, fp, _blob(v)) for fp, v in face.embeddings.items()],
        )
        self._insert_crop(c, face)

    # --- persons and groups ---------------------------------------------------------------
    def create_person(self, appid, person_id, group_ids, person_name, tag, face, limits) -> int:
        with self._write() as c:
            if c.execute("SELECT 1 FROM persons WHERE appid = ? AND person_id = ?", (appid, person_id)).fetchone():
                raise ApiError(errors.PERSON_EXISTS, f"person {person_id!r} already exists")
            c.execute(
                "INSERT INTO persons (appid, person_id, person_name, tag, created) VALUES (?, ?, ?, ?, ?)",
                (appid, person_id, person_name, tag, time.time()),
            )
            joined = self._join_groups(c, appid, person_id, group_ids, limits)
            self._log(c, appid, "person", person_id)
            self._insert_face(c, appid, face)
            self._log(c, appid, "face", person_id, face.face_id)
            return len(joined)

    def delete_person(self, appid, person_id) -> None:
        with self._write() as c:
            self._require_person(c, appid, person_id)
            self._log_person_and_faces(c, appid, person_id)
            c.execute("DELETE FROM persons WHERE appid = ? AND person_id = ?", (appid, person_id))
            self._drop_empty_groups(c, appid)

    def set_info(self, appid, person_id, person_name, tag) -> None:
        with self._write() as c:
            self._require_person(c, appid, person_id)
            if person_name is not None:
                c.execute("UPDATE persons SET person_name = ? WHERE appid = ? AND person_id = ?",
                          (person_name, appid, person_id))
            if tag is not None:
                c.execute("UPDATE persons SET tag = ? WHERE appid = ? AND person_id = ?", (tag, appid, person_id))
            self._log(c, appid, "person", person_id)

    def get_person(self, appid, person_id) -> PersonRecord:
        with self._read() as c:
            row = c.execute(
                "SELECT person_name, tag FROM persons WHERE appid = ? AND person_id = ?", (appid, person_id)
            ).fetchone()
            if row is None:
                raise ApiError(errors.PERSON_UNKNOWN, f"person {person_id!r} does not exist")
            groups = [g for (g,) in c.execute(
                "SELECT group_id FROM person_groups WHERE appid = ? AND person_id = ? ORDER BY group_id",
                (appid, person_id),
            )]
            faces = [f for (f,) in c.execute(
                "SELECT face_id FROM faces WHERE appid = ? AND person_id = ? ORDER BY created, face_id",
                (appid, person_id),
            )]
        return PersonRecord(person_id, row[0], row[1], groups, faces)

    def group_ids(self, appid) -> list[str]:
        return [g for (g,) in self._conn().execute(
            "SELECT group_id FROM groups WHERE appid = ? ORDER BY group_id", (appid,)
        )]

    def person_ids(self, appid, group_id) -> list[str]:
        with self._read() as c:
            if c.execute("SELECT 1 FROM groups WHERE appid = ? AND group_id = ?", (appid, group_id)).fetchone() is None:
                raise ApiError(errors.GROUP_UNKNOWN, f"group {group_id!r} does not exist")
            return [p for (p,) in c.execute(
                "SELECT person_id FROM person_groups WHERE appid = ? AND group_id = ? ORDER BY person_id",
                (appid, group_id),
            )]

    def add_groups(self, appid, person_id, group_ids, limits) -> list[str]:
        with self._write() as c:
            self._require_person(c, appid, person_id)
            joined = self._join_groups(c, appid, person_id, group_ids, limits)
            if joined:
                # faces too: a filtered edge now needs this person's embeddings
                self._log_person_and_faces(c, appid, person_id)
            return joined

    def remove_groups(self, appid, person_id, group_ids) -> list[str]:
        with self._write() as c:
            self._require_person(c, appid, person_id)
            current = [g for (g,) in c.execute(
                "SELECT group_id FROM person_groups WHERE appid = ? AND person_id = ?", (appid, person_id)
            )]
            leaving = [g for g in dict.fromkeys(group_ids) if g in current]
            if leaving and len(leaving) == len(current):
                raise ApiError(errors.INVALID_PARAMETER, "a person must stay in at least one group (use delperson)")
            c.executemany(
                "DELETE FROM person_groups WHERE appid = ? AND person_id = ? AND group_id = ?",
                [(appid, person_id, g) for g in leaving],
            )
            if leaving:
                self._drop_empty_groups(c, appid)
                self._log_person_and_faces(c, appid, person_id)
            return leaving

    # --- faces ----------------------------------------------------------------------------
    def add_faces(self, appid, person_id, faces, limits, near_identical: NearIdentical | None = None) -> list[str]:
        with self._write() as c:
            self._require_person(c, appid, person_id)
            if near_identical is not None:
                faces = self._distinct(c, appid, person_id, faces, near_identical)
            (count,) = c.execute(
                "SELECT COUNT(*) FROM faces WHERE appid = ? AND person_id = ?", (appid, person_id)
            ).fetchone()
            if count + len(faces) > limits.faces_per_person:
                raise ApiError(errors.TOO_MANY_FACES, f"at most {limits.faces_per_person} faces per person")
            for face in faces:
                self._insert_face(c, appid, face)
                self._log(c, appid, "face", person_id, face.face_id)
            return [f.face_id for f in faces]

    @staticmethod
    def _distinct(c: sqlite3.Connection, appid: str, person_id: str, faces: Sequence[FaceRecord],
                  rule: NearIdentical) -> list[FaceRecord]:
        """The faces not near-identical to a stored one or an earlier one (read in the write lock)."""
        known = [_vector(blob) for (blob,) in c.execute(
            "SELECT e.vector FROM faces f JOIN embeddings e ON e.face_id = f.face_id AND e.fingerprint = ?"
            " WHERE f.appid = ? AND f.person_id = ?", (rule.fingerprint, appid, person_id))]
        kept = []
        for face in faces:
            vec = face.embeddings.get(rule.fingerprint)
            if vec is not None and any(rule.same(vec, k) for k in known):
                continue
            if vec is not None:
                known.append(vec)
            kept.append(face)
        return kept

    def delete_faces(self, appid, person_id, face_ids) -> list[str]:
        with self._write() as c:
            self._require_person(c, appid, person_id)
            deleted = []
            for face_id in dict.fromkeys(face_ids):
                cur = c.execute(
                    "DELETE FROM faces WHERE face_id = ? AND appid = ? AND person_id = ?", (face_id, appid, person_id)
                )
                if cur.rowcount:
                    deleted.append(face_id)
                    self._log(c, appid, "face", person_id, face_id)
            return deleted

    def face_ids(self, appid, person_id) -> list[str]:
        with self._read() as c:
            self._require_person(c, appid, person_id)
            return [f for (f,) in c.execute(
                "SELECT face_id FROM faces WHERE appid = ? AND person_id = ? ORDER BY created, face_id",
                (appid, person_id),
            )]

    def face(self, appid, face_id) -> FaceRecord:
        row = self._conn().execute(
            "SELECT face_id, person_id, x, y, width, height, landmarks, yaw, pitch, roll, quality, sharpness,"
            " tag, created FROM faces WHERE face_id = ? AND appid = ?",
            (face_id, appid),
        ).fetchone()
        if row is None:
            raise ApiError(errors.FACE_UNKNOWN, f"face {face_id!r} does not exist")
        return FaceRecord(
            face_id=row[0], person_id=row[1], box=(row[2], row[3], row[4], row[5]),
            landmarks=json.loads(row[6]), yaw=row[7], pitch=row[8], roll=row[9], quality=row[10],
            sharpness=row[11], tag=row[12], created=row[13],
        )

    def embeddings(self, appid, fingerprint, *, person_id=None, group_ids=None):
        sql = (
            "SELECT f.person_id, f.face_id, e.vector, p.person_name, p.tag FROM faces f"
            " JOIN embeddings e ON e.face_id = f.face_id AND e.fingerprint = ?"
            " JOIN persons p ON p.appid = f.appid AND p.person_id = f.person_id WHERE f.appid = ?"
        )
        args: list = [fingerprint, appid]
        if person_id is not None:
            sql += " AND f.person_id = ?"
            args.append(person_id)
        with self._read() as c:
            rows = c.execute(sql, args).fetchall()
            memberships: dict[str, list[str]] = {}
            for pid, gid in c.execute("SELECT person_id, group_id FROM person_groups WHERE appid = ?", (appid,)):
                memberships.setdefault(pid, []).append(gid)
        wanted = set(group_ids) if group_ids is not None else None
        out = []
        for pid, fid, blob, name, tag in rows:
            groups = tuple(memberships.get(pid, ()))
            if wanted is not None and not wanted.intersection(groups):
                continue
            out.append(Enrolled(pid, fid, _vector(blob), groups, name, tag))
        return out

    def new_face_id(self) -> str:
        conn = self._conn()
        while True:
            candidate = str(10**18 + secrets.randbelow(9 * 10**18))
            if conn.execute("SELECT 1 FROM faces WHERE face_id = ?", (candidate,)).fetchone() is None:
                return candidate

    # --- logs -----------------------------------------------------------------------------
    def log_verify(self, record: VerifyRecord) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO verify_log (session_id, appid, person_id, score, confidence, ismatch, time)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.session_id, record.appid, record.person_id, record.score, record.confidence,
                 int(record.ismatch), record.time),
            )

    def get_verify(self, session_id: str) -> VerifyRecord | None:
        row = self._conn().execute(
            "SELECT session_id, appid, person_id, score, confidence, ismatch, time FROM verify_log "
            "WHERE session_id = ?",
            (session_id,),
        ).fetchone()
        return None if row is None else VerifyRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])

    def trim_verify_log(self, before: float) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM verify_log WHERE time < ?", (before,)).rowcount

    def claim_signature(self, key: bytes, valid_until: float, now: float) -> bool:
        with self._write() as c:
            c.execute("DELETE FROM used_signatures WHERE valid_until <= ?", (now,))
            return c.execute("INSERT OR IGNORE INTO used_signatures (key, valid_until) VALUES (?, ?)",
                             (bytes(key), valid_until)).rowcount == 1

    def last_seq(self, appid: str) -> int:
        (seq,) = self._conn().execute("SELECT COALESCE(MAX(seq), 0) FROM changes WHERE appid = ?", (appid,)).fetchone()
        return int(seq)

    def sync_page(self, appid, since, fingerprint, group_ids, limit) -> SyncPage:
        wanted = set(group_ids) if group_ids else None
        with self._read() as c:
            rows = c.execute(
                "SELECT seq, kind, person_id, face_id FROM changes WHERE appid = ? AND seq > ? ORDER BY seq LIMIT ?",
                (appid, since, limit + 1),
            ).fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            visible: dict[str, dict | None] = {}

            def person_state(pid: str) -> dict | None:
                if pid not in visible:
                    row = c.execute(
                        "SELECT person_name, tag FROM persons WHERE appid = ? AND person_id = ?", (appid, pid)
                    ).fetchone()
                    groups = [g for (g,) in c.execute(
                        "SELECT group_id FROM person_groups WHERE appid = ? AND person_id = ? ORDER BY group_id",
                        (appid, pid),
                    )]
                    if row is None or (wanted is not None and not wanted.intersection(groups)):
                        visible[pid] = None
                    else:
                        visible[pid] = {"person_name": row[0], "tag": row[1], "group_ids": tuple(groups)}
                return visible[pid]

            changes: list[Change] = []
            for seq, kind, pid, fid in rows:
                state = person_state(pid)
                if kind == "person":
                    if state is None:
                        changes.append(PersonChange(seq, pid, deleted=True))
                    else:
                        changes.append(PersonChange(seq, pid, **state))
                    continue
                row = None
                if state is not None:
                    row = c.execute(
                        "SELECT e.vector, f.quality FROM faces f JOIN embeddings e ON e.face_id = f.face_id"
                        " AND e.fingerprint = ? WHERE f.face_id = ? AND f.appid = ?",
                        (fingerprint, fid, appid),
                    ).fetchone()
                if row is None:
                    changes.append(FaceChange(seq, fid, pid, deleted=True))
                else:
                    changes.append(FaceChange(seq, fid, pid, embedding=_vector(row[0]), quality=float(row[1])))
        cursor = rows[-1][0] if rows else since
        return SyncPage(changes, cursor, has_more)
