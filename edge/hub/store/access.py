"""Access rules and the edges' access log in the hub's store, written once for both stores.

Rules: one document per appid with a version that grows by one per write; each write appends
a `rules` row to the change log in the same transaction, so the edges get it with their next
sync page. The document is validated by the service before it reaches here (edge.core.
access_rules); the store keeps its canonical JSON text.

The tables are created by the PostgreSQL migration 0005_access.sql and, on SQLite, by
SQLITE_SCHEMA below (the same rows).
"""

from __future__ import annotations

import time

from edge.core.access_rules import RULES_VERSION_CONFLICT, RulesError

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS access_rules (
    appid TEXT PRIMARY KEY, version INTEGER NOT NULL, document TEXT NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS access_chains (
    appid TEXT NOT NULL, edge_id TEXT NOT NULL, seq INTEGER NOT NULL, hash TEXT NOT NULL,
    refused INTEGER NOT NULL DEFAULT 0, last_refusal TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (appid, edge_id)
);
CREATE TABLE IF NOT EXISTS access_records (
    appid TEXT NOT NULL, edge_id TEXT NOT NULL, seq INTEGER NOT NULL, record_id TEXT NOT NULL,
    at REAL NOT NULL, kind TEXT NOT NULL, door TEXT NOT NULL, person_id TEXT NOT NULL,
    decision TEXT NOT NULL, reason TEXT NOT NULL, hash TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (appid, edge_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS access_records_by_id ON access_records (appid, record_id);
CREATE INDEX IF NOT EXISTS access_records_by_person ON access_records (appid, person_id, at);
CREATE INDEX IF NOT EXISTS access_records_by_door ON access_records (appid, door, at);
CREATE INDEX IF NOT EXISTS access_records_by_time ON access_records (appid, at);
"""


class AccessSql:
    """Part of SqlStore (edge.hub.store.sql): uses its `_q`, `_read()`, `_write(appid)` and `_log`."""

    # --- rules ------------------------------------------------------------------------------
    def set_rules(self, appid: str, document: str, expected_version: int | None = None) -> int:
        """Store the appid's rule document (canonical JSON, already validated) as the next
        version, with a `rules` change-log row; the new version. With `expected_version`, -1508
        when the stored version is another (two operators editing at once: the later one
        learns it instead of silently overwriting)."""
        with self._write(appid) as c:
            row = self._q(c, "SELECT version FROM access_rules WHERE appid = ?", (appid,)).fetchone()
            current = 0 if row is None else int(row[0])
            if expected_version is not None and expected_version != current:
                raise RulesError(RULES_VERSION_CONFLICT, f"stored version is {current}, not {expected_version}")
            self._q(c, "INSERT INTO access_rules (appid, version, document, updated) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (appid) DO UPDATE SET version = excluded.version,"
                       " document = excluded.document, updated = excluded.updated",
                    (appid, current + 1, document, time.time()))
            self._log(c, appid, "rules", "")
        return current + 1

    def get_rules(self, appid: str) -> tuple[int, str] | None:
        """(version, document) of the appid's rules, or None when it never had any."""
        with self._read() as c:
            row = self._q(c, "SELECT version, document FROM access_rules WHERE appid = ?", (appid,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def _rules_in(self, c, appid: str) -> tuple[int, str] | None:
        row = self._q(c, "SELECT version, document FROM access_rules WHERE appid = ?", (appid,)).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))
