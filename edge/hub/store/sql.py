"""The hub's data model in SQL, written once for SQLite (edge.hub.store.sqlite) and PostgreSQL
(edge.hub.store.postgres).

A backend supplies its connections: `_write(appid)` (one write transaction; PostgreSQL also
takes the appid's writer lock there) and `_read()` (one consistent snapshot), both inside
`_storage_errors`; `_executemany`; `_driver_errors`; and `PARAM`, its driver's placeholder.
Everything here is written with `?` placeholders, swapped for `PARAM` once per statement.

A driver error other than a violated constraint (disk full, connection lost, server down) is a
storage failure: ApiError -1200, remembered for `health()` until a write succeeds again.

Every mutation appends rows to the change log (`changes`) in its own transaction: a person row
when a person or their groups change, a face row per face added or deleted. A syncing edge reads
the log from its cursor and sees the current state of what each row names (`sync_page`).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Sequence

import numpy as np

from edge.core import errors
from edge.core.credentials import Credential
from edge.core.errors import ApiError
from edge.core.matcher import Enrolled
from edge.core.syncwire import Change, FaceChange, PersonChange, RulesChange, change_mark
from edge.hub.store.access import AccessSql
from edge.hub.store.base import FaceRecord, Limits, NearIdentical, PersonRecord, Store, SyncPage, VerifyRecord
from edge.hub.store.claim_lifts import ClaimLiftsSql
from edge.hub.store.console import ConsoleSql
from edge.hub.store.crops import FaceCropSql
from edge.hub.store.edges import EdgesSql

log = logging.getLogger(__name__)


def blob(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def vector(stored) -> np.ndarray:
    return np.frombuffer(bytes(stored), dtype="<f4").astype(np.float32)


def credential_text(cred: Credential) -> str:
    """A credential's one stored form: canonical JSON, so that one card is one string (the
    unique index of an appid's credentials compares these)."""
    return json.dumps(cred.to_json(), sort_keys=True, separators=(",", ":"))


def credential_of(text: str) -> Credential:
    return Credential.from_json(json.loads(text))


# A sync page reads at most this many times its limit of change rows (sync_page).
SCAN_PAGES = 20

# Persons changed before the hub kept the groups each one has been in (SQLite schema 11,
# PostgreSQL 0011): "in any group" (''), so an edge that held one still hears of their deletion.
SEEN_BEFORE_KEPT = ("INSERT INTO group_members_seen (appid, group_id, person_id) SELECT DISTINCT appid, '', person_id"
                    " FROM changes WHERE kind <> 'rules' ON CONFLICT DO NOTHING")


# How far the clocks of hub processes sharing a store may disagree without a used single-use
# signature being forgotten early (claim_signature)
SIGNATURE_CLOCK_GRACE_S = 300.0

class SqlStore(FaceCropSql, ConsoleSql, AccessSql, EdgesSql, ClaimLiftsSql, Store):
    PARAM = "?"
    _failure: tuple[float, str] | None = None  # (when, why) of the last failed write

    def _driver_errors(self) -> tuple:
        """(the driver's constraint violation, the errors of a value it cannot store, its other
        errors): the first is a bug, not a storage failure, and goes on as it is; the second is
        the client's input (a NUL in text for PostgreSQL), answered as such: counted as a
        storage failure, anyone could turn every process's /health degraded with one request."""
        raise NotImplementedError

    @contextmanager
    def _storage_errors(self, what: str) -> Iterator[None]:
        integrity, refused, failure = self._driver_errors()
        try:
            yield
        except integrity:
            raise
        except refused as exc:
            raise ApiError(errors.ILLEGAL_CHARACTERS, f"a value the store cannot hold: {type(exc).__name__}") \
                from None
        except self._busy_errors():  # a lock another session holds too long: busy, not failing
            raise ApiError(errors.RATE_LIMITED, f"the store is busy ({what}): try again") from None
        except failure as exc:
            # The driver's text goes to the log only: it names the database's host, port, user
            # and socket, and the answer goes to any key (a door's too), /health to anyone.
            kind = type(exc).__name__
            self._log_failure(what, f"{kind}: {str(exc).strip()}")
            if what == "write":
                self._failure = (time.time(), f"{kind} (the hub's log says more)")
            raise ApiError(errors.FEATURE_STORAGE, f"storage {what} failed: {kind}") from None

    def _busy_errors(self) -> tuple:
        """The driver's errors that mean "busy, try again" (code 15), not a failing store."""
        return ()

    def _log_failure(self, what: str, message: str) -> None:
        """Log a storage failure: a new one at once, the same one at most once a minute."""
        now = time.monotonic()
        last = getattr(self, "_logged_failure", None)
        if last is None or last[0] != message or now - last[1] >= 60.0:
            log.error("storage %s failed: %s", what, message)
            self._logged_failure = (message, now)

    def health(self) -> dict:
        out: dict = {"ok": self._failure is None}
        if self._failure is not None:
            out.update(error=self._failure[1], failing_since=round(self._failure[0], 1))
        return out

    def _sql(self, text: str) -> str:
        return text if self.PARAM == "?" else text.replace("?", self.PARAM)

    def _q(self, c, text: str, args: Sequence = ()):
        """Execute one statement on connection `c` (a cursor to fetch from)."""
        return c.execute(self._sql(text), args)

    def _executemany(self, c, text: str, rows: list) -> None:
        raise NotImplementedError

    # --- helpers --------------------------------------------------------------------------
    def _log(self, c, appid: str, kind: str, person_id: str, face_id: str | None = None) -> None:
        self._q(c, "INSERT INTO changes (appid, kind, person_id, face_id, time) VALUES (?, ?, ?, ?, ?)",
                (appid, kind, person_id, face_id, time.time()))

    def _log_person_and_faces(self, c, appid: str, person_id: str) -> None:
        self._log(c, appid, "person", person_id)
        for (face_id,) in self._q(c, "SELECT face_id FROM faces WHERE appid = ? AND person_id = ?"
                                     " ORDER BY created, face_id", (appid, person_id)).fetchall():
            self._log(c, appid, "face", person_id, face_id)

    def _require_person(self, c, appid: str, person_id: str) -> None:
        if self._q(c, "SELECT 1 FROM persons WHERE appid = ? AND person_id = ?", (appid, person_id)).fetchone() is None:
            raise ApiError(errors.PERSON_UNKNOWN, f"person {person_id!r} does not exist")

    def _join_groups(self, c, appid: str, person_id: str, group_ids: Sequence[str], limits: Limits) -> list[str]:
        now = time.time()
        existing = {g for (g,) in self._q(c, "SELECT group_id FROM person_groups WHERE appid = ? AND person_id = ?",
                                          (appid, person_id))}
        wanted = [g for g in dict.fromkeys(group_ids) if g not in existing]
        known = {g for (g,) in self._q(c, "SELECT group_id FROM groups WHERE appid = ?", (appid,))}
        new_groups = [g for g in wanted if g not in known]
        if len(known) + len(new_groups) > limits.groups_per_appid:
            raise ApiError(errors.TOO_MANY_GROUPS, f"at most {limits.groups_per_appid} groups per appid")
        for g in wanted:
            if g in known:
                (count,) = self._q(c, "SELECT COUNT(*) FROM person_groups WHERE appid = ? AND group_id = ?",
                                   (appid, g)).fetchone()
                if count >= limits.persons_per_group:
                    raise ApiError(errors.TOO_MANY_PERSONS,
                                   f"group {g!r} already has {limits.persons_per_group} persons")
        self._executemany(c, "INSERT INTO groups (appid, group_id, created) VALUES (?, ?, ?)",
                          [(appid, g, now) for g in new_groups])
        self._executemany(c, "INSERT INTO person_groups (appid, person_id, group_id) VALUES (?, ?, ?)",
                          [(appid, person_id, g) for g in wanted])
        self._executemany(c, "INSERT INTO group_members_seen (appid, group_id, person_id) VALUES (?, ?, ?)"
                             " ON CONFLICT DO NOTHING", [(appid, g, person_id) for g in wanted])
        return wanted

    def _seen_in_groups(self, c, appid: str, person_id: str) -> None:
        """The groups the person is in now, as ever held (before they are deleted or leave): the
        table was filled once at the upgrade, and a hub process of older code still running on
        the store enrolled persons without rows there, whose deletion then never reached the
        doors of their groups (sync_page leaves out persons a filtered door never held)."""
        self._q(c, "INSERT INTO group_members_seen (appid, group_id, person_id) SELECT appid, group_id, person_id"
                   " FROM person_groups WHERE appid = ? AND person_id = ? ON CONFLICT DO NOTHING", (appid, person_id))

    def _drop_empty_groups(self, c, appid: str) -> None:
        self._q(c, "DELETE FROM groups WHERE appid = ? AND NOT EXISTS (SELECT 1 FROM person_groups pg"
                   " WHERE pg.appid = groups.appid AND pg.group_id = groups.group_id)", (appid,))

    def _insert_face(self, c, appid: str, face: FaceRecord) -> None:
        x, y, w, h = (int(v) for v in face.box)
        self._q(c, "INSERT INTO faces (face_id, appid, person_id, x, y, width, height, landmarks, yaw, pitch, roll,"
                   " quality, sharpness, tag, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (face.face_id, appid, face.person_id, x, y, w, h, json.dumps(face.landmarks),
                 float(face.yaw), float(face.pitch), float(face.roll), float(face.quality),
                 float(face.sharpness), face.tag, face.created or time.time()))
        self._executemany(c, "INSERT INTO embeddings (face_id, fingerprint, vector) VALUES (?, ?, ?)",
                          [(face.face_id, fp, blob(v)) for fp, v in face.embeddings.items()])
        self._insert_crop(c, face)

    # --- persons and groups ---------------------------------------------------------------
    def create_person(self, appid, person_id, group_ids, person_name, tag, face, limits) -> int:
        with self._write(appid) as c:
            if self._q(c, "SELECT 1 FROM persons WHERE appid = ? AND person_id = ?", (appid, person_id)).fetchone():
                raise ApiError(errors.PERSON_EXISTS, f"person {person_id!r} already exists")
            self._q(c, "INSERT INTO persons (appid, person_id, person_name, tag, created) VALUES (?, ?, ?, ?, ?)",
                    (appid, person_id, person_name, tag, time.time()))
            joined = self._join_groups(c, appid, person_id, group_ids, limits)
            self._log(c, appid, "person", person_id)
            self._insert_face(c, appid, face)
            self._log(c, appid, "face", person_id, face.face_id)
            return len(joined)

    def delete_person(self, appid, person_id) -> None:
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            self._seen_in_groups(c, appid, person_id)
            self._log_person_and_faces(c, appid, person_id)
            self._q(c, "DELETE FROM persons WHERE appid = ? AND person_id = ?", (appid, person_id))
            self._drop_empty_groups(c, appid)
            # their faces at the doors go too (sealed, but a face); the records stay, as evidence
            self._q(c, "DELETE FROM access_crops WHERE appid = ? AND (edge_id, seq) IN (SELECT edge_id, seq"
                       " FROM access_records WHERE appid = ? AND person_id = ?)", (appid, appid, person_id))

    def set_info(self, appid, person_id, person_name, tag) -> None:
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            if person_name is not None:
                self._q(c, "UPDATE persons SET person_name = ? WHERE appid = ? AND person_id = ?",
                        (person_name, appid, person_id))
            if tag is not None:
                self._q(c, "UPDATE persons SET tag = ? WHERE appid = ? AND person_id = ?", (tag, appid, person_id))
            self._log(c, appid, "person", person_id)

    def get_person(self, appid, person_id) -> PersonRecord:
        with self._read() as c:
            row = self._q(c, "SELECT person_name, tag FROM persons WHERE appid = ? AND person_id = ?",
                          (appid, person_id)).fetchone()
            if row is None:
                raise ApiError(errors.PERSON_UNKNOWN, f"person {person_id!r} does not exist")
            groups = [g for (g,) in self._q(c, "SELECT group_id FROM person_groups WHERE appid = ? AND person_id = ?"
                                               " ORDER BY group_id", (appid, person_id))]
            faces = [f for (f,) in self._q(c, "SELECT face_id FROM faces WHERE appid = ? AND person_id = ?"
                                              " ORDER BY created, face_id", (appid, person_id))]
        return PersonRecord(person_id, row[0], row[1], groups, faces)

    def group_ids(self, appid) -> list[str]:
        with self._read() as c:
            return [g for (g,) in self._q(c, "SELECT group_id FROM groups WHERE appid = ? ORDER BY group_id",
                                          (appid,))]

    def person_ids(self, appid, group_id) -> list[str]:
        with self._read() as c:
            row = self._q(c, "SELECT 1 FROM groups WHERE appid = ? AND group_id = ?", (appid, group_id)).fetchone()
            if row is None:
                raise ApiError(errors.GROUP_UNKNOWN, f"group {group_id!r} does not exist")
            return [p for (p,) in self._q(c, "SELECT person_id FROM person_groups WHERE appid = ? AND group_id = ?"
                                             " ORDER BY person_id", (appid, group_id))]

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
            current = [g for (g,) in self._q(c, "SELECT group_id FROM person_groups WHERE appid = ? AND person_id = ?",
                                             (appid, person_id))]
            leaving = [g for g in dict.fromkeys(group_ids) if g in current]
            if leaving and len(leaving) == len(current):
                raise ApiError(errors.INVALID_PARAMETER, "a person must stay in at least one group (use delperson)")
            self._seen_in_groups(c, appid, person_id)
            self._executemany(c, "DELETE FROM person_groups WHERE appid = ? AND person_id = ? AND group_id = ?",
                              [(appid, person_id, g) for g in leaving])
            if leaving:
                self._drop_empty_groups(c, appid)
                self._log_person_and_faces(c, appid, person_id)
            return leaving

    # --- credentials ----------------------------------------------------------------------
    def set_credentials(self, appid, person_id, credentials) -> None:
        texts = list(dict.fromkeys(credential_text(c) for c in credentials))
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            for i, text in enumerate(texts):
                # Inside the appid's write transaction: two persons can never both take one card.
                taken = self._q(c, "SELECT 1 FROM credentials WHERE appid = ? AND credential = ? AND person_id <> ?",
                                (appid, text, person_id)).fetchone()
                if taken:
                    raise ApiError(errors.INVALID_PARAMETER, f"credentials[{i}] already belongs to another person")
            self._q(c, "DELETE FROM credentials WHERE appid = ? AND person_id = ?", (appid, person_id))
            self._executemany(c, "INSERT INTO credentials (appid, person_id, position, credential)"
                                 " VALUES (?, ?, ?, ?)", [(appid, person_id, i, t) for i, t in enumerate(texts)])
            self._log(c, appid, "person", person_id)

    def get_credentials(self, appid, person_id) -> list[Credential]:
        with self._read() as c:
            self._require_person(c, appid, person_id)
            return self._credentials(c, appid, person_id)

    def _credentials(self, c, appid: str, person_id: str) -> list[Credential]:
        return [credential_of(t) for (t,) in self._q(
            c, "SELECT credential FROM credentials WHERE appid = ? AND person_id = ? ORDER BY position",
            (appid, person_id))]

    # --- faces ----------------------------------------------------------------------------
    def add_faces(self, appid, person_id, faces, limits, near_identical: NearIdentical | None = None) -> list[str]:
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            if near_identical is not None:
                faces = self._distinct(c, appid, person_id, faces, near_identical)
            (count,) = self._q(c, "SELECT COUNT(*) FROM faces WHERE appid = ? AND person_id = ?",
                               (appid, person_id)).fetchone()
            if count + len(faces) > limits.faces_per_person:
                raise ApiError(errors.TOO_MANY_FACES, f"at most {limits.faces_per_person} faces per person")
            for face in faces:
                self._insert_face(c, appid, face)
                self._log(c, appid, "face", person_id, face.face_id)
            return [f.face_id for f in faces]

    def _distinct(self, c, appid: str, person_id: str, faces: Sequence[FaceRecord],
                  rule: NearIdentical) -> list[FaceRecord]:
        """The faces not near-identical to a stored one or an earlier one (read inside the write
        transaction, so two adds of one photo, from any process, cannot both pass)."""
        known = [vector(v) for (v,) in self._q(
            c, "SELECT e.vector FROM faces f JOIN embeddings e ON e.face_id = f.face_id AND e.fingerprint = ?"
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
        with self._write(appid) as c:
            self._require_person(c, appid, person_id)
            deleted = []
            for face_id in dict.fromkeys(face_ids):
                cur = self._q(c, "DELETE FROM faces WHERE face_id = ? AND appid = ? AND person_id = ?",
                              (face_id, appid, person_id))
                if cur.rowcount:
                    deleted.append(face_id)
                    self._log(c, appid, "face", person_id, face_id)
            return deleted

    def face_ids(self, appid, person_id) -> list[str]:
        with self._read() as c:
            self._require_person(c, appid, person_id)
            return [f for (f,) in self._q(c, "SELECT face_id FROM faces WHERE appid = ? AND person_id = ?"
                                             " ORDER BY created, face_id", (appid, person_id))]

    def face(self, appid, face_id) -> FaceRecord:
        with self._read() as c:
            row = self._q(c, "SELECT face_id, person_id, x, y, width, height, landmarks, yaw, pitch, roll, quality,"
                             " sharpness, tag, created FROM faces WHERE face_id = ? AND appid = ?",
                          (face_id, appid)).fetchone()
        if row is None:
            raise ApiError(errors.FACE_UNKNOWN, f"face {face_id!r} does not exist")
        return FaceRecord(
            face_id=row[0], person_id=row[1], box=(row[2], row[3], row[4], row[5]),
            landmarks=json.loads(row[6]), yaw=row[7], pitch=row[8], roll=row[9], quality=row[10],
            sharpness=row[11], tag=row[12], created=row[13],
        )

    def embeddings(self, appid, fingerprint, *, person_id=None, group_ids=None):
        sql = ("SELECT f.person_id, f.face_id, e.vector, p.person_name, p.tag FROM faces f"
               " JOIN embeddings e ON e.face_id = f.face_id AND e.fingerprint = ?"
               " JOIN persons p ON p.appid = f.appid AND p.person_id = f.person_id WHERE f.appid = ?")
        member_sql = "SELECT person_id, group_id FROM person_groups WHERE appid = ?"
        args: list = [fingerprint, appid]
        if person_id is not None:
            sql += " AND f.person_id = ?"
            member_sql += " AND person_id = ?"
            args.append(person_id)
        with self._read() as c:
            rows = self._q(c, sql, args).fetchall()
            memberships: dict[str, list[str]] = {}
            for pid, gid in self._q(c, member_sql, args[1:]):
                memberships.setdefault(pid, []).append(gid)
        wanted = set(group_ids) if group_ids is not None else None
        out = []
        for pid, fid, stored, name, tag in rows:
            groups = tuple(memberships.get(pid, ()))
            if wanted is not None and not wanted.intersection(groups):
                continue
            out.append(Enrolled(pid, fid, vector(stored), groups, name, tag))
        return out

    def new_face_id(self) -> str:
        with self._read() as c:
            while True:
                candidate = str(10**18 + secrets.randbelow(9 * 10**18))
                if self._q(c, "SELECT 1 FROM faces WHERE face_id = ?", (candidate,)).fetchone() is None:
                    return candidate

    # --- logs -----------------------------------------------------------------------------
    def log_verify(self, record: VerifyRecord) -> None:
        with self._write() as c:
            self._q(c, "INSERT INTO verify_log (session_id, appid, person_id, score, confidence, ismatch, time)"
                       " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (record.session_id, record.appid, record.person_id, record.score, record.confidence,
                     bool(record.ismatch), record.time))

    def get_verify(self, session_id: str) -> VerifyRecord | None:
        with self._read() as c:
            row = self._q(c, "SELECT session_id, appid, person_id, score, confidence, ismatch, time FROM verify_log"
                             " WHERE session_id = ?", (session_id,)).fetchone()
        return None if row is None else VerifyRecord(row[0], row[1], row[2], row[3], row[4], bool(row[5]), row[6])

    def trim_verify_log(self, before: float) -> int:
        with self._write() as c:
            return self._q(c, "DELETE FROM verify_log WHERE time < ?", (before,)).rowcount

    def claim_signature(self, key: bytes, valid_until: float, now: float) -> bool:
        # `now` is the calling process's clock: a process whose clock ran ahead of the one that
        # accepted a signature deleted its row while the other still took the signature as
        # valid, and a replay passed there. Rows are kept a grace past their validity.
        now -= SIGNATURE_CLOCK_GRACE_S
        with self._write() as c:
            # How far rows have been forgotten is kept: a signature valid no longer than that may
            # have been used, and is refused. With the clock stepped back (an NTP correction, a
            # VM snapshot restored) a captured signature, its row long deleted, passed again.
            (forgotten,) = self._q(c, "SELECT until FROM signatures_forgotten WHERE id = 1").fetchone()
            if valid_until <= forgotten:
                log.warning("a single-use signature older than what the hub remembers (its clock went back %.0f s?) "
                            "refused as used", max(0.0, forgotten - now))
                return False
            self._q(c, "DELETE FROM used_signatures WHERE valid_until <= ?", (now,))
            self._q(c, "UPDATE signatures_forgotten SET until = ? WHERE id = 1 AND until < ?", (now, now))
            # Atomic across processes: of two concurrent inserts of one key the second waits for
            # the first to commit, then conflicts. A row past its validity is taken over.
            row = self._q(c, "INSERT INTO used_signatures AS u (key, valid_until) VALUES (?, ?) ON CONFLICT (key)"
                             " DO UPDATE SET valid_until = EXCLUDED.valid_until WHERE u.valid_until <= ? RETURNING 1",
                          (bytes(key), valid_until, now)).fetchone()
            return row is not None

    # --- sync feed ------------------------------------------------------------------------
    def vanished_since(self, appid: str, since: int, group_ids: Sequence[str] | None, limit: int,
                       after: str = "") -> list[str]:
        """Persons with a change after `since` — deleted, out of its groups, re-enrolled under the
        same id, a face removed, their cards or name changed — whom such an edge may hold (with `group_ids`:
        once in one of them): what a door whose pack this hub no longer serves must drop, as it
        cannot take their new state (SqlStore.sync_page says why only those). Only the persons
        gone were named: one deleted and enrolled again under the same id, or a face removed,
        kept their old faces there. By person_id, those after `after`, at most `limit` (the edge
        asks for the next ones after a full list: the first `limit` were named again and again)."""
        # held only if known before the cursor: a person whose first change is after it (a
        # bulk enrolment since) was never synced there
        args: list[Any] = [appid, since, after, since]
        held = (" AND EXISTS (SELECT 1 FROM changes o WHERE o.appid = ch.appid AND o.person_id = ch.person_id"
                " AND o.seq <= ?)")
        if group_ids:
            marks = ", ".join("?" * len(group_ids))
            held += (" AND EXISTS (SELECT 1 FROM group_members_seen s WHERE s.appid = ch.appid AND s.person_id ="
                     f" ch.person_id AND s.group_id IN ('', {marks}))")
            args += [*group_ids]
        with self._read() as c:
            # a face change counts when the face is gone (removed, or its person deleted): `hub
            # reembed` logs one per face it embeds again, and every person held was dropped
            rows = self._q(c, "SELECT DISTINCT ch.person_id FROM changes ch WHERE ch.appid = ? AND ch.seq > ?"
                              " AND (ch.kind = 'person' OR (ch.kind = 'face' AND NOT EXISTS (SELECT 1 FROM faces f"
                              f" WHERE f.face_id = ch.face_id))) AND ch.person_id > ?{held}"
                              " ORDER BY ch.person_id LIMIT ?", (*args, limit)).fetchall()
        return [pid for (pid,) in rows]

    def last_seq(self, appid: str) -> int:
        with self._read() as c:
            return self._head(c, appid)

    def _head(self, c, appid: str) -> int:
        """The appid's newest change number (0: none), read on `c` (in its snapshot)."""
        (seq,) = self._q(c, "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE appid = ?", (appid,)).fetchone()
        return int(seq)

    def sync_page(self, appid, since, fingerprint, group_ids, limit, with_rules: bool = False) -> SyncPage:
        wanted = set(group_ids) if group_ids else None
        with self._read() as c:
            visible: dict[str, dict | None] = {}

            def person_state(pid: str) -> dict | None:
                if pid not in visible:
                    row = self._q(c, "SELECT person_name, tag FROM persons WHERE appid = ? AND person_id = ?",
                                  (appid, pid)).fetchone()
                    groups = [g for (g,) in self._q(c, "SELECT group_id FROM person_groups WHERE appid = ?"
                                                       " AND person_id = ? ORDER BY group_id", (appid, pid))]
                    if row is None or (wanted is not None and not wanted.intersection(groups)):
                        visible[pid] = None
                    else:
                        visible[pid] = {"person_name": row[0], "tag": row[1], "group_ids": tuple(groups),
                                        "credentials": tuple(self._credentials(c, appid, pid))}
                return visible[pid]

            held: dict[str, bool] = {}

            def maybe_held(pid: str) -> bool:
                """Could a filtered edge hold this person (now outside its groups, or deleted)?
                Only if they were ever in one of its groups: an edge starts afresh when its groups
                change. Others' rows are left out, not sent as deletions: a door's key taken
                learns no one else's id."""
                if pid not in held:
                    held[pid] = self._q(
                        c, "SELECT 1 FROM group_members_seen WHERE appid = ? AND person_id = ? AND group_id IN"
                           f" ({', '.join('?' * (len(wanted) + 1))})", (appid, pid, "", *sorted(wanted or ())),
                    ).fetchone() is not None
                return held[pid]

            # Every rules row would carry the document as it is now: only the last one does (the
            # edge applies that one), or 1,000 edits of a 256 KB document made one page of 256 MB.
            # Read once, in the page's snapshot: the page also says its version (an edge that has
            # not applied it must not open on the rules it has, or on none: edge.door.rules_in_force).
            rules_now = self._rules_in(c, appid) if with_rules else None
            head = self._head(c, appid)

            def mark(seq: int) -> str:
                row = self._q(c, "SELECT time FROM changes WHERE appid = ? AND seq = ?", (appid, seq)).fetchone()
                return change_mark(row[0] if row else None)

            last_rules = self._q(c, "SELECT MAX(seq) FROM changes WHERE appid = ? AND kind = 'rules'",
                                 (appid,)).fetchone()[0] if with_rules else None

            def change_of(seq, kind, pid, fid) -> Change | None:
                if kind == "rules":  # an edge that does not ask for rules skips the row (its cursor moves on)
                    if rules_now is None or seq != last_rules:
                        return None
                    return RulesChange(seq, rules_now[0], rules_now[1])
                state = person_state(pid)
                if state is None and wanted is not None and not maybe_held(pid):
                    return None
                if kind == "person":
                    return PersonChange(seq, pid, deleted=True) if state is None else PersonChange(seq, pid, **state)
                row = None
                if state is not None:
                    row = self._q(c, "SELECT e.vector, f.quality FROM faces f JOIN embeddings e"
                                     " ON e.face_id = f.face_id AND e.fingerprint = ?"
                                     " WHERE f.face_id = ? AND f.appid = ?", (fingerprint, fid, appid)).fetchone()
                if row is None:
                    return FaceChange(seq, fid, pid, deleted=True)
                return FaceChange(seq, fid, pid, embedding=vector(row[0]), quality=float(row[1]))

            # Rows left out do not count: read on until the page holds `limit` changes, so that a
            # filtered edge behind thousands of other groups' rows does not get empty pages (an
            # edge stops at one). At most SCAN_PAGES × limit rows for one page: bounded work.
            changes: list[Change] = []
            cursor, has_more, scanned = since, True, 0
            while has_more and len(changes) < limit and scanned < SCAN_PAGES * limit:
                need = limit - len(changes)
                rows = self._q(c, "SELECT seq, kind, person_id, face_id FROM changes WHERE appid = ? AND seq > ?"
                                  " ORDER BY seq LIMIT ?", (appid, cursor, need + 1)).fetchall()
                has_more = len(rows) > need
                for seq, kind, pid, fid in rows[:need]:
                    change = change_of(seq, kind, pid, fid)
                    if change is not None:
                        changes.append(change)
                    cursor = seq
                scanned += min(len(rows), need)
            since_mark, cursor_mark = mark(since), mark(cursor)
        return SyncPage(changes, cursor, has_more, (rules_now[0] if rules_now else 0) if with_rules else None, head,
                        since_mark, cursor_mark)
