"""What each edge last told the hub when it synced (docs/console.md, doors at a glance).

An edge that sends its `edge_id` with `/face/sync` (edge.daemon.sync) is recorded here: when it
last synced, the change-log cursor it had applied then (`since`: every change up to it is in
its cache), its model pack's fingerprint, its liveness mode, its door's state and its health,
the kind of hub key it synced with (`key`: syncwire.KEY_EDGE, one bound to it; KEY_APPID,
one of its whole appid, which could enrol anyone if taken off the door; "" for a row written
before the hub kept it) and the groups it asked for (`groups`, JSON; [] for every group, or
before the hub kept them: the `--group`s of the key the console tells it to make). One row per
(appid, edge_id), overwritten at each sync. Written once for both stores: the PostgreSQL
migrations 0006_edges.sql, 0009_edge_key.sql and 0010_edge_groups.sql and, on SQLite,
SQLITE_SCHEMA and add_columns below make the same table, and an index to find a person's last
change (its deletion).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS edge_reports (
    appid TEXT NOT NULL, edge_id TEXT NOT NULL, last_contact REAL NOT NULL, cursor INTEGER NOT NULL,
    pack TEXT NOT NULL, liveness TEXT NOT NULL, door TEXT NOT NULL, health TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '', groups TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (appid, edge_id)
);
CREATE INDEX IF NOT EXISTS changes_by_person ON changes (appid, person_id, seq);
"""


def add_columns(conn) -> None:
    """An SQLite file of schema 6 to 8 has edge_reports without `key` and `groups`, of schema 9
    without `groups`: add them (its rows "" and [])."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(edge_reports)")}
    if "key" not in columns:
        conn.execute("ALTER TABLE edge_reports ADD COLUMN key TEXT NOT NULL DEFAULT ''")
    if "groups" not in columns:
        conn.execute("ALTER TABLE edge_reports ADD COLUMN groups TEXT NOT NULL DEFAULT '[]'")


@dataclass(frozen=True)
class EdgeReport:
    edge_id: str
    last_contact: float  # epoch seconds, the hub's clock
    cursor: int  # the change-log seq the edge had applied when it last synced
    pack: str  # its embedder's fingerprint
    liveness: str  # its [liveness] mode
    door: str  # its door's state, e.g. "closed locked normal" (empty: no door)
    health: str  # "ok" or "degraded"
    key: str = ""  # the hub key it synced with: syncwire.KEY_EDGE or KEY_APPID
    groups: tuple[str, ...] = ()  # the groups its sync asked for; () every group


class EdgesSql:
    """Part of SqlStore (edge.hub.store.sql): uses its `_q`, `_read()` and `_write()`."""

    def record_edge(self, appid: str, report: EdgeReport) -> None:
        with self._write(appid) as c:
            self._q(c, "INSERT INTO edge_reports (appid, edge_id, last_contact, cursor, pack, liveness, door, health,"
                       " key, groups) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (appid, edge_id) DO UPDATE"
                       " SET last_contact = excluded.last_contact, cursor = excluded.cursor, pack = excluded.pack,"
                       " liveness = excluded.liveness, door = excluded.door, health = excluded.health,"
                       " key = excluded.key, groups = excluded.groups",
                    (appid, report.edge_id, report.last_contact, report.cursor, report.pack, report.liveness,
                     report.door, report.health, report.key, json.dumps(list(report.groups))))

    def edge_reports(self, appid: str) -> list[EdgeReport]:
        with self._read() as c:
            rows = self._q(c, "SELECT edge_id, last_contact, cursor, pack, liveness, door, health, key, groups"
                              " FROM edge_reports WHERE appid = ? ORDER BY edge_id", (appid,)).fetchall()
        return [EdgeReport(str(r[0]), float(r[1]), int(r[2]), *(str(v) for v in r[3:8]), tuple(json.loads(r[8])))
                for r in rows]

    def person_last_seq(self, appid: str, person_id: str) -> int:
        """The seq of the last change naming the person (its deletion, for a deleted one); 0: none."""
        with self._read() as c:
            (seq,) = self._q(c, "SELECT COALESCE(MAX(seq), 0) FROM changes WHERE appid = ? AND person_id = ?",
                             (appid, person_id)).fetchone()
        return int(seq)
