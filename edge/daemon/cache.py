"""The edge's local copy of the hub's persons and faces (SQLite, WAL), fed by sync.

Only what matching and the door need is kept: persons (name, tag, groups, credentials: the card
numbers a door sends the site's panel), faces (embedding of this device's embedder fingerprint,
quality) and the site's access rules (edge.core.access_rules: the last document that passed
validation, used by the door's evaluator with no network; a synced document that fails
validation is recorded as refused and never replaces the good one). Each sync page is applied
together with its cursor in one transaction (`apply_page`), so a crash or power cut leaves the
cache at a page boundary and the next sync resumes from the stored cursor. synchronous=FULL: a
page is small and rare, and an acknowledged page must survive a power cut (else the cursor would
skip changes).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Iterable

import numpy as np

from edge.core import syncwire
from edge.core.access_rules import RulesError, RuleSet, parse_rules
from edge.core.credentials import Credential, CredentialError
from edge.core.matcher import DEFAULT_THRESHOLDS, Enrolled, Gallery, Thresholds
from edge.core.sqlitedb import open_durable, transaction
from edge.core.syncwire import PersonChange, RulesChange

# 2: credentials. A cache of version 1 synced its persons without them: it starts again from
# cursor 0 (the persons and faces it holds stay usable until the new pages replace them).
# 3: access rules; likewise (a cache of version 2 moved its cursor past rules changes unasked).
SCHEMA_VERSION = 3

log = logging.getLogger(__name__)


class CacheError(Exception):
    """A change from the hub that cannot be applied (malformed); the page is rolled back."""


class EdgeCache:
    def __init__(self, path: str | Path, dim: int | None = None):
        self.path = Path(path)
        # the length of this device's embeddings, when known: a face of another length from the hub
        # is refused (into an empty cache it was taken, and every decision then failed on it)
        self.dim = dim
        self._lock = threading.Lock()
        # rules_status() as committed: set under the lock by every write that changes it
        # (apply_page, reset), read without it (edge.door.rules_in_force)
        self._last_status: dict | None = None
        self._db = open_durable(self.path)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS persons (person_id TEXT PRIMARY KEY,
                person_name TEXT NOT NULL DEFAULT '', tag TEXT NOT NULL DEFAULT '',
                group_ids TEXT NOT NULL DEFAULT '[]');
            CREATE TABLE IF NOT EXISTS faces (face_id TEXT PRIMARY KEY, person_id TEXT NOT NULL,
                embedding BLOB NOT NULL, quality REAL NOT NULL DEFAULT 0);
            CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
            CREATE TABLE IF NOT EXISTS credentials (person_id TEXT PRIMARY KEY, credentials TEXT NOT NULL);
            CREATE TABLE IF NOT EXISTS rules (id INTEGER PRIMARY KEY CHECK (id = 1),
                version INTEGER NOT NULL, document TEXT NOT NULL);
            """)
        # the committed document, parsed once per write (the evaluator asks per decision), in a
        # tuple so that a reader without the lock takes it whole: None until read, (None,) when
        # none validates
        self._rules: tuple[RuleSet | None] | None = None
        self._page_dim: int | None = None  # the embeddings' length while a page is applied
        with transaction(self._db):
            version = self._meta("schema_version")
            if version and int(version) < SCHEMA_VERSION:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('cursor', '0')")
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))

    # -- meta ------------------------------------------------------------------------------
    def _meta(self, key: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def forget_persons(self, person_ids: list[str]) -> int:
        """Drop these persons (faces, cards) without moving the cursor: the hub said they changed,
        though it serves no page for this cache's pack (syncwire.VANISHED); how many went. Marked
        (`dropped_unserved`): their faces from before the cursor come back only by a sync from 0
        once the pack is served again (`rewind`)."""
        with self._lock, transaction(self._db):
            gone = sum(self._drop_person(pid) for pid in person_ids)
            if gone:
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('dropped_unserved', '1')")
            return gone

    @property
    def dropped_unserved(self) -> bool:
        """Persons were dropped while the hub served no page for this pack (forget_persons)."""
        with self._lock:
            return self._meta("dropped_unserved") == "1"

    def rewind(self) -> None:
        """Sync again from 0, keeping what is held until the pages replace it: the persons dropped
        while the pack was not served (a card changed, one face of two removed) kept their other
        faces on the hub, before the cursor, and never came back to this door."""
        with self._lock, transaction(self._db):
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 [("cursor", "0"), ("cursor_mark", ""), ("dropped_unserved", "")])

    def _drop_person(self, person_id: str) -> int:
        """A person's faces, cards and row gone (a deletion synced, or said gone): 1 if it was here."""
        self._db.execute("DELETE FROM faces WHERE person_id = ?", (person_id,))
        self._db.execute("DELETE FROM credentials WHERE person_id = ?", (person_id,))
        return int(self._db.execute("DELETE FROM persons WHERE person_id = ?", (person_id,)).rowcount)

    @property
    def cursor(self) -> int:
        with self._lock:
            return int(self._meta("cursor", "0"))

    @property
    def fingerprint(self) -> str:
        with self._lock:
            return self._meta("fingerprint")

    @property
    def scope(self) -> str:
        with self._lock:
            return self._meta("scope")

    def counts(self) -> dict[str, int]:
        with self._lock:
            persons = self._db.execute("SELECT count(*) FROM persons").fetchone()[0]
            faces = self._db.execute("SELECT count(*) FROM faces").fetchone()[0]
        return {"persons": int(persons), "faces": int(faces)}

    def check_consistent(self) -> list[str]:
        """Problems found by SQLite's integrity check ('ok' is no problem)."""
        with self._lock:
            rows = [r[0] for r in self._db.execute("PRAGMA integrity_check")]
        return [r for r in rows if r != "ok"]

    # -- writing ---------------------------------------------------------------------------
    def reset(self, fingerprint: str, scope: str) -> None:
        """Forget everything: the embedder or the synced groups changed, start again at 0."""
        with self._lock:
            try:
                with transaction(self._db):
                    self._db.execute("DELETE FROM rules")
                    self._db.execute("DELETE FROM meta WHERE key IN ('rules_refused', 'rules_error')")
                    self._db.execute("DELETE FROM faces")
                    self._db.execute("DELETE FROM credentials")
                    self._db.execute("DELETE FROM persons")
                    self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                         [("cursor", "0"), ("cursor_mark", ""), ("fingerprint", fingerprint),
                                          ("scope", scope), ("dropped_unserved", "")])
            finally:
                self._committed()

    @property
    def cursor_mark(self) -> str:
        """The hub's mark of the change the cursor stands at (syncwire.CURSOR_MARK); "" unknown."""
        with self._lock:
            return self._meta("cursor_mark")

    def apply_page(self, changes: Iterable[object], cursor: int, hub_rules: int | None = None,
                   cursor_mark: str | None = None) -> int:
        """Apply one page of hub changes (as on the wire) and its cursor atomically; returns
        changes applied. CacheError for a malformed one: the whole page is rolled back.
        `hub_rules`: the version of the hub's rule document the page came with (syncwire.
        RULES_VERSION), kept across a reset: until this cache has that version (or refused it),
        the door denies (edge.door.rules_in_force), so a resync cut before the rules row reached
        it never leaves the door on the config's groups."""
        n = 0
        changes = list(changes)
        with self._lock:
            if not changes and self._unchanged(cursor, hub_rules, cursor_mark):
                # an idle sync (every minute): nothing to write, and no commit (an fsync of the
                # SD card, 1,440 a day for nothing)
                return 0
            try:
                with transaction(self._db):
                    row = self._db.execute("SELECT length(embedding) FROM faces LIMIT 1").fetchone()
                    self._page_dim = row[0] // 4 if row else None
                    for change in changes:
                        self._apply(change)
                        n += 1
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('cursor', ?)", (str(int(cursor)),))
                    self._db.execute("INSERT OR REPLACE INTO meta VALUES ('cursor_mark', ?)", (cursor_mark or "",))
                    if hub_rules is not None:
                        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('hub_rules', ?)", (str(int(hub_rules)),))
            finally:
                self._committed()  # read again after commit or rollback alike
        return n

    def _unchanged(self, cursor: int, hub_rules: int | None, cursor_mark: str | None) -> bool:
        """Whether the meta a page would write is the meta there is (the lock held)."""
        return (self._meta("cursor") == str(int(cursor)) and self._meta("cursor_mark") == (cursor_mark or "")
                and (hub_rules is None or self._meta("hub_rules") == str(int(hub_rules))))

    def _apply(self, data: object) -> None:
        try:
            change = syncwire.decode(data)
        except syncwire.MalformedChange as exc:
            raise CacheError(str(exc)) from None
        if isinstance(change, RulesChange):
            self._apply_rules(change)
        elif isinstance(change, PersonChange):
            if change.deleted:
                self._drop_person(change.person_id)
            else:
                self._db.execute("DELETE FROM credentials WHERE person_id = ?", (change.person_id,))
                self._db.execute("INSERT OR REPLACE INTO persons VALUES (?, ?, ?, ?)",
                                 (change.person_id, change.person_name, change.tag,
                                  json.dumps(list(change.group_ids))))
                if change.credentials:
                    self._db.execute("INSERT INTO credentials VALUES (?, ?)",
                                     (change.person_id, json.dumps([c.to_json() for c in change.credentials])))
        elif change.deleted:
            self._db.execute("DELETE FROM faces WHERE face_id = ?", (change.face_id,))
        else:
            assert change.embedding is not None  # decode() gives every face not deleted its vector
            # One face of another length made the gallery drop every face (silently: everyone
            # unknown at the door). The page is refused instead.
            if self.dim is not None and change.embedding.size != self.dim:
                raise CacheError(f"face {change.face_id}: an embedding of {change.embedding.size} values where this "
                                 f"device's embedder gives {self.dim}")
            if self._page_dim is None:
                self._page_dim = int(change.embedding.size)
            elif change.embedding.size != self._page_dim:
                raise CacheError(f"face {change.face_id}: an embedding of {change.embedding.size} values where the "
                                 f"gallery's have {self._page_dim}")
            self._db.execute("INSERT OR REPLACE INTO faces VALUES (?, ?, ?, ?)",
                             (change.face_id, change.person_id, change.embedding.astype("<f4").tobytes(),
                              change.quality))

    def _apply_rules(self, change: RulesChange) -> None:
        """Keep a rule document only if it validates; a broken one is recorded (version and
        why) and the last good one stays: the cursor moves on, the door never runs on it."""
        try:
            parse_rules(json.loads(change.document), change.version)
        except (ValueError, RecursionError, RulesError) as exc:
            why = exc.message if isinstance(exc, RulesError) else f"not JSON ({type(exc).__name__})"
            log.error("sync: access rules version %d refused, the last good rules stay: %s", change.version, why)
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                                 [("rules_refused", str(change.version)), ("rules_error", why)])
            return
        self._db.execute("INSERT OR REPLACE INTO rules VALUES (1, ?, ?)", (change.version, change.document))
        self._db.execute("DELETE FROM meta WHERE key IN ('rules_refused', 'rules_error')")

    # -- reading ---------------------------------------------------------------------------
    def rules(self) -> RuleSet | None:
        """The last good access rules, or None when there are none that validate (never synced,
        or the stored copy unreadable): the evaluator then denies (`rules_invalid`). Offline.
        Once read, without the lock: a sync page holds it for as long as the card takes, and the
        door's schedule and decisions read the rules (what is committed is what a page in
        progress has not changed yet)."""
        read = self._rules
        if read is None:
            with self._lock:  # not read yet, or unreadable at the last write: an error here is the caller's
                read = self._rules = self._rules if self._rules is not None else self._rules_in_db()
        return read[0]

    def _rules_in_db(self) -> tuple[RuleSet | None]:
        """The committed document, parsed (the lock held)."""
        row = self._db.execute("SELECT version, document FROM rules WHERE id = 1").fetchone()
        if row is not None:
            try:
                return (parse_rules(json.loads(row[1]), int(row[0])),)
            except (ValueError, RecursionError, RulesError):  # checked when synced: a damaged file
                log.error("cache: the stored access rules are unreadable; every door request is denied")
        return (None,)

    def rules_status(self) -> dict:
        """For /health: the version in use (0: none), the last refused version and why, and the
        hub's version at the last sync (`hub`, 0: none or not told). As committed, without
        waiting for a sync page that holds the cache (a schedule's unlocked window outlasted its
        end, and a synced lockdown came late, by as long as a stalled card held a page): every
        write that changes it keeps it (`_committed`)."""
        last = self._last_status
        if last is not None:
            return dict(last)
        with self._lock:  # not read yet, or unreadable at the last write: an error here is the caller's
            self._last_status = self._status_in_db()
            return dict(self._last_status)

    def _status_in_db(self) -> dict:
        row = self._db.execute("SELECT version FROM rules WHERE id = 1").fetchone()
        refused = self._meta("rules_refused")
        return {"version": int(row[0]) if row else 0, "refused": int(refused) if refused else None,
                "error": self._meta("rules_error"), "hub": int(self._meta("hub_rules", "0"))}

    def _committed(self) -> None:
        """The rules and their status read again after a write that may change them (the lock
        held), so that readers need not wait for the next page; unread when they cannot be read:
        the next reader reads them and gets the error (the door then denies, rules_invalid)."""
        try:
            self._rules, self._last_status = self._rules_in_db(), self._status_in_db()
        except sqlite3.Error:
            self._rules, self._last_status = None, None

    def gallery(self, thresholds: Thresholds = DEFAULT_THRESHOLDS) -> Gallery:
        """An immutable gallery of every face whose person is known (version = the cursor)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT f.face_id, f.person_id, f.embedding, p.person_name, p.tag, p.group_ids "
                "FROM faces f JOIN persons p ON p.person_id = f.person_id ORDER BY f.face_id").fetchall()
            cursor = self._meta("cursor", "0")
        faces = []
        dims = {len(r[2]) for r in rows}
        for fid, pid, blob, name, tag, groups in rows:
            if len(dims) > 1:  # never compare vectors of different embedders
                continue
            faces.append(Enrolled(pid, fid, np.frombuffer(blob, dtype="<f4").copy(),
                                  tuple(json.loads(groups)), name, tag))
        return Gallery(faces, thresholds, version=f"sync-{cursor}")

    def credentials_of(self, person_id: str) -> tuple[Credential, ...]:
        """The person's credentials as last synced (for the door's card read / Wiegand out);
        () when they have none or are unknown. Works offline."""
        with self._lock:
            row = self._db.execute("SELECT credentials FROM credentials WHERE person_id = ?", (person_id,)).fetchone()
        if row is None:
            return ()
        try:
            return tuple(Credential.from_json(c) for c in json.loads(row[0]))
        except (ValueError, CredentialError):  # checked when synced: only a damaged file gets here
            log.error("cache: the stored credentials of a person are unreadable; none used")
            return ()

    def close(self) -> None:
        with self._lock:
            self._db.close()
