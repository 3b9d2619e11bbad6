"""Lockouts lifted on the hub: an operator's word that a person's refused claims no longer count
(docs/daemon.md#a-stolen-badge-gets-a-few-tries).

A badge refused `max_refusals` times is locked at every door of the site (the doors share their
refusals through the hub: edge.hub.claim_refusals). Lifting it is one row per person, the last
lift and who made it: the hub then leaves out the refusals before it and sends it to every edge
with each sync, which ends a lockout that started before it and starts the count again. Written
once for both stores: the PostgreSQL migration 0008_claim_lifts.sql and, on SQLite,
SQLITE_SCHEMA below create the same table.
"""

from __future__ import annotations

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS claim_lifts (
    appid TEXT NOT NULL, person_id TEXT NOT NULL, at REAL NOT NULL, lifted_by TEXT NOT NULL,
    PRIMARY KEY (appid, person_id)
);
"""


class ClaimLiftsSql:
    """Part of SqlStore (edge.hub.store.sql): uses its `_q`, `_read()` and `_write()`."""

    def lift_claims(self, appid: str, person_id: str, at: float, lifted_by: str) -> None:
        with self._write(appid) as c:
            self._q(c, "INSERT INTO claim_lifts (appid, person_id, at, lifted_by) VALUES (?, ?, ?, ?)"
                       " ON CONFLICT (appid, person_id) DO UPDATE SET at = excluded.at, lifted_by = excluded.lifted_by",
                    (appid, person_id, at, lifted_by))

    def claim_lifts(self, appid: str, since: float) -> dict[str, tuple[float, str]]:
        """person_id -> (time, by whom) of the lifts at or after `since`."""
        with self._read() as c:
            rows = self._q(c, "SELECT person_id, at, lifted_by FROM claim_lifts WHERE appid = ? AND at >= ?",
                           (appid, since)).fetchall()
        return {str(p): (float(at), str(by)) for p, at, by in rows}
