"""`Store` on PostgreSQL, shared by several hub processes on one or more machines.

psycopg 3 with its connection pool: one pool per process, a connection per call for the time
of one transaction. The schema is created and migrated at start (`migrate`, numbered SQL files
in migrations/postgresql, applied under an advisory lock so processes starting together apply
each one once).

Every mutation of an appid takes that appid's transaction-scoped advisory lock before anything
else. Two consequences, both needed once several processes write:
- the count limits (faces per person, persons per group, groups per appid) are checked and
  enforced by one writer at a time, so two processes can never both add the 20th face;
- the change log's numbers of one appid are taken in commit order: a writer takes its numbers
  only after the previous writer of that appid committed, and keeps the lock until it commits.
  A sequence alone would not give that (a number is taken at insert, visible at commit), and a
  syncing edge that read past a later number would skip the earlier one for ever.
The model work happens before the transaction, so the lock is held for milliseconds.

A database error other than a violated constraint (connection lost, server down, pool
exhausted past its timeout, disk full) is ApiError -1200, remembered for `health()` until a
write succeeds again.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from edge import errors
from edge.errors import ApiError
from edge.matcher import Enrolled
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

MIGRATIONS = Path(__file__).parent / "migrations" / "postgresql"
# Advisory lock namespaces (first key of the two-key form): migrations, and writers per appid.
MIGRATION_LOCK = 1701
APPID_LOCK = 1702


def _blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def _vector(blob) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype="<f4").astype(np.float32)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration file, in order."""
    out = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", path.name)
        if match:
            out.append((int(match[1]), match[2], path.read_text()))
    return out


def migrate(conn) -> list[int]:
    """Apply the migrations this database lacks (one transaction); returns the versions applied.
    Refuses a database migrated by newer code."""
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                     " name TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)")
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        known = migrations()
        newest = max((v for v, _, _ in known), default=0)
        if done and max(done) > newest:
            raise RuntimeError(f"database schema version {max(done)} is newer than this code ({newest})")
        for version, name, sql in known:
            if version not in done:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version, name, applied) VALUES (%s, %s, %s)",
                             (version, name, time.time()))
                applied.append(version)
    return applied


class PostgresStore(FaceCropSql, Store):
    PARAM = "%s"

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout_s: float = 10.0):
        from psycopg_pool import ConnectionPool

        self.url = url
        self._failure: tuple[float, str] | None = None  # (when, why) of the last failed write
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=connect_timeout_s,
                                    open=False, name="edge-hub")
        self._pool.open(wait=True, timeout=connect_timeout_s)
        with self._pool.connection() as conn:
            self.applied_migrations = migrate(conn)

    # --- connections and transactions -----------------------------------------------------
    @contextmanager
    def _write(self, appid: str | None = None) -> Iterator:
        """One transaction; with `appid`, holding that appid's writer lock (module docstring)."""
        with self._storage_errors("write"), self._pool.connection() as conn:
            if appid is not None:
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (APPID_LOCK, appid))
            yield conn
        self._failure = None

    @contextmanager
    def _read(self) -> Iterator:
        """One snapshot for several SELECTs."""
        with self._storage_errors("read"), self._pool.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn

    @contextmanager
    def _storage_errors(self, what: str) -> Iterator[None]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            yield
        except psycopg.IntegrityError:
            raise  # a broken invariant is a bug, not a storage failure
        except (psycopg.Error, PoolTimeout) as exc:
            message = f"{type(exc).__name__}: {str(exc).strip()}"
            if what == "write":
                self._failure = (time.time(), message)
            raise ApiError(errors.FEATURE_STORAGE, f"storage {what} failed: {message}") from None

    def health(self) -> dict:
        out: dict = {"ok": self._failure is None}
        if self._failure is not None:
            out.update(error=self._failure[1], failing_since=round(self._failure[0], 1))
        return out

    def close(self) -> None:
        self._pool.close()

    def rate_limiter(self, rate_per_s: float, burst: int) -> PostgresRateLimiter:
        return PostgresRateLimiter(self._pool, rate_per_s, burst)

    # --- helpers --------------------------------------------------------------------------
    @staticmethod
    def _log(c, appid: str, kind: str, person_id: str, face_id: str | None = None) -> None:
        c.execute(
            "INSERT INTO changes (appid, kind, person_id, face_id, time) VALUES (%s, %s, %s, %s, %s)",
            (appid, kind, person_id, face_id, time.time()),
        )

    def _log_person_and_faces(self, c, appid: str, person_id: str) -> None:
        self._log(c, appid, "person", person_id)
        for (face_id,) in c.execute(
            "SELECT face_id FROM faces WHERE appid = %s AND person_id = %s ORDER BY created, face_id",
            (appid, person_id),
        ).fetchall():
            self._log(c, appid, "face", person_id, face_id)

    @staticmethod
    def _require_person(c, appid: str, person_id: str) -> None:
        row = c.execute("SELECT 1 FROM persons WHERE appid = %s AND person_id = %s", (appid, person_id)).fetchone()
        if row is None:
            raise ApiError(errors.PERSON_UNKNOWN, f"person {person_id!r} does not exist")

    @staticmethod
    def _join_groups(c, appid: str, person_id: str, group_ids, limits: Limits) -> list[str]:
        now = time.time()
        existing = {g for (g,) in c.execute(
            "SELECT group_id FROM person_groups WHERE appid = %s AND person_id = %s", (appid, person_id))}
        wanted = [g for g in dict.fromkeys(group_ids) if g not in existing]
        known = {g for (g,) in c.execute("SELECT group_id FROM groups WHERE appid = %s", (appid,))}
        new_groups = [g for g in wanted if g not in known]
        if len(known) + len(new_groups) > limits.groups_per_appid:
            raise ApiError(errors.TOO_MANY_GROUPS, f"at most {limits.groups_per_appid} groups per appid")
        for g in wanted:
            if g in known:
                (count,) = c.execute(
                    "SELECT COUNT(*) FROM person_groups WHERE appid = %s AND group_id = %s", (appid, g)
                ).fetchone()
                if count >= limits.persons_per_group:
                    raise ApiError(errors.TOO_MANY_PERSONS,
                                   f"group {g!r} already has {limits.persons_per_group} persons")
        with c.cursor() as cur:
            cur.executemany("INSERT INTO groups (appid, group_id, created) VALUES (%s, %s, %s)",
                            [(appid, g, now) for g in new_groups])
            cur.executemany("INSERT INTO person_groups (appid, person_id, group_id) VALUES (%s, %s, %s)",
                            [(appid, person_id, g) for g in wanted])
        return wanted

    @staticmethod
    def _drop_empty_groups(c, appid: str) -> None:
        c.execute(
            "DELETE FROM groups WHERE appid = %s AND NOT EXISTS (SELECT 1 FROM person_groups pg "
            "WHERE pg.appid = groups.appid AND pg.group_id = groups.group_id)",
            (appid,),
        )

    def _insert_face(self, c, appid: str, face: FaceRecord) -> None:
        x, y, w, h = (int(v) for v in face.box)
        c.execute(
            "INSERT INTO faces (face_id, appid, person_id, x, y, width, height, landmarks, yaw, pitch, roll,"
            " quality, sharpness, tag, created) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            (
                face.face_id, appid, face.person_id, x, y, w, h, json.dumps(face.landmarks),
                float(face.yaw), float(face.pitch), float(face.roll), float(face.quality),
                float(face.sharpness), face.tag, face.created or time.time(),
            ),
        )
        with c.cursor() as cur:
            cur.executemany("INSERT INTO embeddings (face_id, fingerprint, vector) VALUES (%s, %s, %s)",
                            [(face.face_id, fp, _blob(v)) for fp, v in face.embeddings.items()])
        self._insert_crop(c, face)

    # --- persons and groups ---------------------------------------------------------------
    def create_person(self, appid, person_id, group_ids, person_name, tag, face, limits) -> int:
        with self._write(appid) as c:
            if c.execute("SELECT 1 FROM persons WHERE appid = %s AND person_id = %s", (appid, person_id)).fetchone():
                raise ApiError(errors.PERSON_EXISTS, f"person {person_id!r} already exists")
            c.execute(
                "INSERT INTO persons (appid, person_id, person_name, tag, created) VALUES (%s, %s, %s, %s, %s)",
                (appid, person_id, person_name, tag, time.time()),
            )
            joined = self._join_groups(c, appid, person_id, group_ids, limits)
            self._log(c, appid, "person", person_id)
            self._insert_face(c, appid, face)
            self._log(c, appid, "face", person_id, face.face_id)
            return len(joined)

    def delete_person(self, appid, person_id) -> None:
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            self._log_person_and_faces(c, appid, person_id)
            c.execute("DELETE FROM persons WHERE appid = %s AND person_id = %s", (appid, person_id))
            self._drop_empty_groups(c, appid)

    def set_info(self, appid, person_id, person_name, tag) -> None:
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            if person_name is not None:
                c.execute("UPDATE persons SET person_name = %s WHERE appid = %s AND person_id = %s",
                          (person_name, appid, person_id))
            if tag is not None:
                c.execute("UPDATE persons SET tag = %s WHERE appid = %s AND person_id = %s", (tag, appid, person_id))
            self._log(c, appid, "person", person_id)

    def get_person(self, appid, person_id) -> PersonRecord:
        with self._read() as c:
            row = c.execute(
                "SELECT person_name, tag FROM persons WHERE appid = %s AND person_id = %s", (appid, person_id)
            ).fetchone()
            if row is None:
                raise ApiError(errors.PERSON_UNKNOWN, f"person {person_id!r} does not exist")
            groups = [g for (g,) in c.execute(
                "SELECT group_id FROM person_groups WHERE appid = %s AND person_id = %s ORDER BY group_id",
                (appid, person_id))]
            faces = [f for (f,) in c.execute(
                "SELECT face_id FROM faces WHERE appid = %s AND person_id = %s ORDER BY created, face_id",
                (appid, person_id))]
        return PersonRecord(person_id, row[0], row[1], groups, faces)

    def group_ids(self, appid) -> list[str]:
        with self._read() as c:
            return [g for (g,) in c.execute("SELECT group_id FROM groups WHERE appid = %s ORDER BY group_id", (appid,))]

    def person_ids(self, appid, group_id) -> list[str]:
        with self._read() as c:
            row = c.execute("SELECT 1 FROM groups WHERE appid = %s AND group_id = %s", (appid, group_id)).fetchone()
            if row is None:
                raise ApiError(errors.GROUP_UNKNOWN, f"group {group_id!r} does not exist")
            return [p for (p,) in c.execute(
                "SELECT person_id FROM person_groups WHERE appid = %s AND group_id = %s ORDER BY person_id",
                (appid, group_id))]

    def add_groups(self, appid, person_id, group_ids, limits) -> list[str]:
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            joined = self._join_groups(c, appid, person_id, group_ids, limits)
            if joined:
                # faces too: a filtered edge now needs this person's embeddings
                self._log_person_and_faces(c, appid, person_id)
            return joined

    def remove_groups(self, appid, person_id, group_ids) -> list[str]:
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            current = [g for (g,) in c.execute(
                "SELECT group_id FROM person_groups WHERE appid = %s AND person_id = %s", (appid, person_id))]
            leaving = [g for g in dict.fromkeys(group_ids) if g in current]
            if leaving and len(leaving) == len(current):
                raise ApiError(errors.INVALID_PARAMETER, "a person must stay in at least one group (use delperson)")
            with c.cursor() as cur:
                cur.executemany("DELETE FROM person_groups WHERE appid = %s AND person_id = %s AND group_id = %s",
                                [(appid, person_id, g) for g in leaving])
            if leaving:
                self._drop_empty_groups(c, appid)
                self._log_person_and_faces(c, appid, person_id)
            return leaving

    # --- faces ----------------------------------------------------------------------------
    def add_faces(self, appid, person_id, faces, limits, near_identical: NearIdentical | None = None) -> list[str]:
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            if near_identical is not None:
                faces = self._distinct(c, appid, person_id, faces, near_identical)
            (count,) = c.execute(
                "SELECT COUNT(*) FROM faces WHERE appid = %s AND person_id = %s", (appid, person_id)
            ).fetchone()
            if count + len(faces) > limits.faces_per_person:
                raise ApiError(errors.TOO_MANY_FACES, f"at most {limits.faces_per_person} faces per person")
            for face in faces:
                self._insert_face(c, appid, face)
                self._log(c, appid, "face", person_id, face.face_id)
            return [f.face_id for f in faces]

    @staticmethod
    def _distinct(c, appid: str, person_id: str, faces, rule: NearIdentical) -> list[FaceRecord]:
        """The faces not near-identical to a stored one or an earlier one (read under the
        appid's writer lock, so two processes adding one photo cannot both pass)."""
        known = [_vector(blob) for (blob,) in c.execute(
            "SELECT e.vector FROM faces f JOIN embeddings e ON e.face_id = f.face_id AND e.fingerprint = %s"
            " WHERE f.appid = %s AND f.person_id = %s", (rule.fingerprint, appid, person_id))]
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
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            deleted = []
            for face_id in dict.fromkeys(face_ids):
                cur = c.execute("DELETE FROM faces WHERE face_id = %s AND appid = %s AND person_id = %s",
                                (face_id, appid, person_id))
                if cur.rowcount:
                    deleted.append(face_id)
                    self._log(c, appid, "face", person_id, face_id)
            return deleted

    def face_ids(self, appid, person_id) -> list[str]:
        with self._read() as c:
            self._require_person(c, appid, person_id)
            return [f for (f,) in c.execute(
                "SELECT face_id FROM faces WHERE appid = %s AND person_id = %s ORDER BY created, face_id",
                (appid, person_id))]

    def face(self, appid, face_id) -> FaceRecord:
        with self._read() as c:
            row = c.execute(
                "SELECT face_id, person_id, x, y, width, height, landmarks, yaw, pitch, roll, quality, sharpness,"
                " tag, created FROM faces WHERE face_id = %s AND appid = %s",
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
            " JOIN embeddings e ON e.face_id = f.face_id AND e.fingerprint = %s"
            " JOIN persons p ON p.appid = f.appid AND p.person_id = f.person_id WHERE f.appid = %s"
        )
        args: list = [fingerprint, appid]
        if person_id is not None:
            sql += " AND f.person_id = %s"
            args.append(person_id)
        with self._read() as c:
            rows = c.execute(sql, args).fetchall()
            memberships: dict[str, list[str]] = {}
            member_sql = "SELECT person_id, group_id FROM person_groups WHERE appid = %s"
            member_args: list = [appid]
            if person_id is not None:
                member_sql += " AND person_id = %s"
                member_args.append(person_id)
            for pid, gid in c.execute(member_sql, member_args):
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
        with self._read() as c:
            while True:
                candidate = str(10**18 + secrets.randbelow(9 * 10**18))
                if c.execute("SELECT 1 FROM faces WHERE face_id = %s", (candidate,)).fetchone() is None:
                    return candidate

    # --- logs -----------------------------------------------------------------------------
    def log_verify(self, record: VerifyRecord) -> None:
        with self._write() as c:
            c.execute(
                "INSERT INTO verify_log (session_id, appid, person_id, score, confidence, ismatch, time)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                (record.session_id, record.appid, record.person_id, record.score, record.confidence,
                 bool(record.ismatch), record.time),
            )

    def get_verify(self, session_id: str) -> VerifyRecord | None:
        with self._read() as c:
            row = c.execute(
                "SELECT session_id, appid, person_id, score, confidence, ismatch, time FROM verify_log"
                " WHERE session_id = %s", (session_id,),
            ).fetchone()
        return None if row is None else VerifyRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])

    def trim_verify_log(self, before: float) -> int:
        with self._write() as c:
            return c.execute("DELETE FROM verify_log WHERE time < %s", (before,)).rowcount

    def claim_signature(self, key: bytes, valid_until: float, now: float) -> bool:
        # Atomic across processes: of two concurrent inserts of one key the second waits for the
        # first to commit, then conflicts. A row past its validity is taken over.
        with self._write() as c:
            c.execute("DELETE FROM used_signatures WHERE valid_until <= %s", (now,))
            row = c.execute(
                "INSERT INTO used_signatures AS u (key, valid_until) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
                " SET valid_until = EXCLUDED.valid_until WHERE u.valid_until <= %s RETURNING 1",
                (bytes(key), valid_until, now)).fetchone()
            return row is not None

    def last_seq(self, appid: str) -> int:
        with self._read() as c:
            (seq,) = c.execute("SELECT COALESCE(MAX(seq), 0) FROM changes WHERE appid = %s", (appid,)).fetchone()
        return int(seq)

    def sync_page(self, appid, since, fingerprint, group_ids, limit) -> SyncPage:
        wanted = set(group_ids) if group_ids else None
        with self._read() as c:
            rows = c.execute(
                "SELECT seq, kind, person_id, face_id FROM changes WHERE appid = %s AND seq > %s"
                " ORDER BY seq LIMIT %s",
                (appid, since, limit + 1),
            ).fetchall()
            has_more = len(rows) > limit
            rows = rows[:limit]
            visible: dict[str, dict | None] = {}

            def person_state(pid: str) -> dict | None:
                if pid not in visible:
                    row = c.execute("SELECT person_name, tag FROM persons WHERE appid = %s AND person_id = %s",
                                    (appid, pid)).fetchone()
                    groups = [g for (g,) in c.execute(
                        "SELECT group_id FROM person_groups WHERE appid = %s AND person_id = %s ORDER BY group_id",
                        (appid, pid))]
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
                        " AND e.fingerprint = %s WHERE f.face_id = %s AND f.appid = %s",
                        (fingerprint, fid, appid),
                    ).fetchone()
                if row is None:
                    changes.append(FaceChange(seq, fid, pid, deleted=True))
                else:
                    changes.append(FaceChange(seq, fid, pid, embedding=_vector(row[0]), quality=float(row[1])))
        cursor = rows[-1][0] if rows else since
        return SyncPage(changes, cursor, has_more)


class PostgresRateLimiter:
    """The per-appid token bucket of `RateLimiter`, kept in the database so that every hub
    process draws from the same bucket. One statement per request: the row lock of
    INSERT ... ON CONFLICT DO UPDATE makes the take atomic, and the database's clock serves
    every process (their own clocks may disagree)."""

    blocking = True  # a network round trip: called off the event loop

    _TAKE = """
        INSERT INTO rate_buckets AS b (key, tokens, updated)
        VALUES (%(key)s, %(burst)s - 1, extract(epoch FROM clock_timestamp()))
        ON CONFLICT (key) DO UPDATE SET
            tokens = LEAST(%(burst)s, b.tokens + (EXCLUDED.updated - b.updated) * %(rate)s) - 1,
            updated = EXCLUDED.updated
        WHERE LEAST(%(burst)s, b.tokens + (EXCLUDED.updated - b.updated) * %(rate)s) >= 1
        RETURNING tokens
    """

    def __init__(self, pool, rate_per_s: float, burst: int):
        self._pool = pool
        self.rate = float(rate_per_s)
        self.burst = max(1, int(burst))

    def allow(self, key: str) -> bool:
        """Take one token for `key`; False when the bucket is empty. rate 0 = unlimited."""
        import psycopg
        from psycopg_pool import PoolTimeout

        if self.rate <= 0:
            return True
        try:
            with self._pool.connection() as conn:
                row = conn.execute(self._TAKE, {"key": key, "burst": float(self.burst), "rate": self.rate}).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise ApiError(errors.FEATURE_STORAGE, f"rate limit unavailable: {type(exc).__name__}") from None
        return row is not None
