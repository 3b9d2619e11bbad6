"""Access rules and the edges' access log in the hub's store, written once for both stores.

Rules: one document per appid with a version that grows by one per write; each write appends
a `rules` row to the change log in the same transaction, so the edges get it with their next
sync page. The document is validated by the service before it reaches here (edge.core.
access_rules); the store keeps its canonical JSON text.

Access log: each edge's records (edge.core.access_chain), one hash chain per (appid, edge_id).
An upload is checked against the stored end of that chain inside the transaction that stores
it: records already stored (same seq, same hash) are skipped, so a batch sent twice stores
nothing twice; a record that differs from the stored one, a gap, or a broken link refuses the
whole batch, and the refusal is counted on the chain (`access_chain`).

Each decision record's lockout mark (`detail.claim_lockout`, `refused` or `admitted`: edge.hub.
claim_refusals) is kept in a column of its own, `counted`, so the other doors' refusals are read
by it with an index, a bounded number per edge, and no record's body is parsed for them.

The tables are created by the PostgreSQL migrations 0005_access.sql, 0007_access_crops.sql and
0012_access_counted.sql and 0015_access_received.sql and, on SQLite, by SQLITE_SCHEMA,
add_counted_column and add_received_column below (the same rows).

Retention counts from `received`, the hub's clock when a record was stored, never from its `at`
(the door's clock): a Pi has no battery clock, and one started offline after weeks switched off
dates its records weeks back; trimmed by `at`, they went within a minute of their upload, and the
door, its clock corrected, pruned its own copies as held by the hub: both copies gone.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Sequence

from edge.api.service import ApiErrorWithData
from edge.core.access_chain import GENESIS, PROBLEM_CODES, ChainEnd, ChainError, canonical, follow, record_hash
from edge.core.access_rules import RULES_VERSION_CONFLICT, RulesError
from edge.core.syncwire import ADMITTED, COUNTED, REFUSED

# Search filters: API name -> column (all equality, each backed by the (appid, column, at) or
# (appid, at) index with the time range).
FILTERS = {"person_id": "person_id", "door": "door", "decision": "decision", "outcome": "outcome",
           "reason": "reason", "edge_id": "edge_id", "kind": "kind"}

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
    decision TEXT NOT NULL, outcome TEXT NOT NULL, reason TEXT NOT NULL, hash TEXT NOT NULL,
    body TEXT NOT NULL, counted TEXT NOT NULL DEFAULT '', received REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (appid, edge_id, seq)
);
CREATE UNIQUE INDEX IF NOT EXISTS access_records_by_id ON access_records (appid, edge_id, record_id);
CREATE INDEX IF NOT EXISTS access_records_by_person ON access_records (appid, person_id, at);
CREATE INDEX IF NOT EXISTS access_records_by_door ON access_records (appid, door, at);
CREATE INDEX IF NOT EXISTS access_records_by_time ON access_records (appid, at);
DROP INDEX IF EXISTS access_records_at;
CREATE INDEX IF NOT EXISTS access_records_received ON access_records (received);
CREATE INDEX IF NOT EXISTS access_records_counted ON access_records (appid, at) WHERE counted <> '';
CREATE TABLE IF NOT EXISTS access_crops (
    appid TEXT NOT NULL, edge_id TEXT NOT NULL, seq INTEGER NOT NULL, sha256 TEXT NOT NULL,
    sealed BLOB NOT NULL,
    PRIMARY KEY (appid, edge_id, seq)
);
"""


def add_counted_column(conn) -> None:
    """An SQLite file of schema 5 to 11 has access_records without `counted`: add it, filled from
    the records' bodies, before SQLITE_SCHEMA's index on it is made."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(access_records)")}
    if columns and "counted" not in columns:
        conn.execute("ALTER TABLE access_records ADD COLUMN counted TEXT NOT NULL DEFAULT ''")
        conn.execute(f"UPDATE access_records SET counted = json_extract(body, '$.detail.{COUNTED}')"
                     f" WHERE kind = 'decision' AND json_extract(body, '$.detail.{COUNTED}') IN (?, ?)",
                     (REFUSED, ADMITTED))


def add_received_column(conn) -> None:
    """An SQLite file of schema 5 to 12 has access_records without `received`: add it, the
    stored records taken as received when they happened (as they were trimmed until now)."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(access_records)")}
    if columns and "received" not in columns:
        conn.execute("ALTER TABLE access_records ADD COLUMN received REAL NOT NULL DEFAULT 0")
        conn.execute("UPDATE access_records SET received = at")


def counted_mark(record: dict[str, Any]) -> str:
    """The lockout's mark of a decision record (REFUSED, ADMITTED), "" for any other."""
    detail = record.get("detail")
    mark = detail.get(COUNTED) if isinstance(detail, dict) and record.get("kind") == "decision" else None
    return mark if mark in (REFUSED, ADMITTED) else ""


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

    # --- access log ---------------------------------------------------------------------------
    def store_access_records(self, appid: str, edge_id: str, records: Sequence[dict[str, Any]],
                             crops: dict[int, bytes] | None = None, received: float | None = None,
                             ) -> tuple[int, int]:
        """Store a batch of an edge's records that continues its chain; (stored, chain head seq).
        ApiErrorWithData -1520/-1521/-1522 (data: the head seq the hub has) for a batch that
        does not: nothing of it is stored. `crops`: the records' sealed face crops by seq,
        checked against their records by the caller (access_chain.parse_crops); stored as they
        are (the hub has no key to open them), once. `received`: the hub's time (now by default),
        which retention counts from."""
        received = time.time() if received is None else received
        with self._write(appid) as c:
            row = self._q(c, "SELECT seq, hash FROM access_chains WHERE appid = ? AND edge_id = ?",
                          (appid, edge_id)).fetchone()
            end = ChainEnd(0, GENESIS) if row is None else ChainEnd(int(row[0]), str(row[1]))
            try:
                fresh = [r for r in records if not self._already_stored(c, appid, edge_id, end, r)]
                new_end = follow(fresh, end)
            except ChainError as exc:
                raise ApiErrorWithData(PROBLEM_CODES[exc.problem], f"access log of {edge_id}: {exc}",
                                       {"head": end.seq}) from None
            integrity = self._driver_errors()[0]
            for r in fresh:
                try:
                    self._q(c, "INSERT INTO access_records (appid, edge_id, seq, record_id, at, kind, door, person_id,"
                               " decision, outcome, reason, hash, body, counted, received)"
                               " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (appid, edge_id, r["seq"], r["record_id"], float(r["at"]), r["kind"],
                             str(r.get("door", "")), str(r.get("person_id", "")), str(r.get("decision", "")),
                             str(r.get("outcome", "")), str(r.get("reason", "")), r["hash"], canonical(r),
                             counted_mark(r), received))
                except integrity:  # the unique (appid, edge_id, record_id): a record_id used twice
                    raise ApiErrorWithData(PROBLEM_CODES["malformed"], f"access log of {edge_id}: record {r['seq']}:"
                                           " its record_id is another record's", {"head": end.seq}) from None
            for seq, sealed in (crops or {}).items():
                self._q(c, "INSERT INTO access_crops (appid, edge_id, seq, sha256, sealed) VALUES (?, ?, ?, ?, ?)"
                           " ON CONFLICT (appid, edge_id, seq) DO NOTHING",
                        (appid, edge_id, seq, hashlib.sha256(sealed).hexdigest(), sealed))
            if fresh:
                self._q(c, "INSERT INTO access_chains (appid, edge_id, seq, hash) VALUES (?, ?, ?, ?)"
                           " ON CONFLICT (appid, edge_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                        (appid, edge_id, new_end.seq, new_end.hash))
        return len(fresh), new_end.seq

    def _already_stored(self, c, appid: str, edge_id: str, end: ChainEnd, record: Any) -> bool:
        """True for a record the hub has (same seq and hash, its content that hash's: a batch sent
        again after a lost answer); ChainError for one at a stored seq that differs. The content
        is hashed again: a copy whose hash alone matched once had a forged face crop filed under
        the stored record, checked against the copy's `detail`."""
        seq = record.get("seq") if isinstance(record, dict) else None
        if not isinstance(seq, int) or isinstance(seq, bool) or seq > end.seq:
            return False
        row = self._q(c, "SELECT hash FROM access_records WHERE appid = ? AND edge_id = ? AND seq = ?",
                      (appid, edge_id, seq)).fetchone()
        if row is not None and row[0] == record.get("hash"):
            try:
                intact = record_hash(record) == row[0]
            except (TypeError, ValueError, RecursionError):
                intact = False
            if intact:
                return True
        raise ChainError("edited", seq, "differs from the record the hub stored at this place")

    def access_crop(self, appid: str, edge_id: str, seq: int) -> bytes | None:
        """The sealed face crop of one record, as the edge sent it (only the edge can open it)."""
        with self._read() as c:
            row = self._q(c, "SELECT sealed FROM access_crops WHERE appid = ? AND edge_id = ? AND seq = ?",
                          (appid, edge_id, seq)).fetchone()
        return None if row is None else bytes(row[0])

    def refuse_access_upload(self, appid: str, edge_id: str, why: str) -> None:
        """Count a refused upload on the edge's chain (kept even before any record arrived)."""
        with self._write(appid) as c:
            self._q(c, "INSERT INTO access_chains (appid, edge_id, seq, hash, refused, last_refusal)"
                       " VALUES (?, ?, 0, ?, 1, ?) ON CONFLICT (appid, edge_id) DO UPDATE SET"
                       " refused = access_chains.refused + 1, last_refusal = excluded.last_refusal",
                    (appid, edge_id, GENESIS, why[:500]))

    def access_chain(self, appid: str, edge_id: str) -> dict[str, Any] | None:
        return self._access_chains(appid, edge_id).get(edge_id)

    def access_chains(self, appid: str) -> dict[str, dict[str, Any]]:
        return self._access_chains(appid, None)

    def _access_chains(self, appid: str, edge_id: str | None) -> dict[str, dict[str, Any]]:
        one = " AND edge_id = ?" if edge_id is not None else ""
        with self._read() as c:
            rows = self._q(c, "SELECT edge_id, seq, hash, refused, last_refusal FROM access_chains"
                              " WHERE appid = ?" + one, (appid,) + ((edge_id,) if one else ())).fetchall()
        return {row[0]: {"edge_id": row[0], "seq": int(row[1]), "hash": row[2], "refused": int(row[3]),
                         "last_refusal": row[4]} for row in rows}

    def access_record(self, appid: str, edge_id: str, seq: int) -> dict[str, Any] | None:
        """One stored record (with its edge_id), or None."""
        with self._read() as c:
            row = self._q(c, "SELECT body FROM access_records WHERE appid = ? AND edge_id = ? AND seq = ?",
                          (appid, edge_id, seq)).fetchone()
        return None if row is None else {"edge_id": edge_id, **json.loads(row[0])}

    def trim_access_log(self, before: float, batch: int = 5_000) -> int:
        """Delete every appid's access records received before `before` (the hub's clock: see
        the module's docstring) and their sealed crops (the chains' heads stay: the next upload is
        checked as ever); how many records went. Found by their own index, `batch` records a
        transaction: the first trim after retention was set deleted a year of records in one,
        holding the store's writer lock meanwhile."""
        gone = 0
        with self._write() as c:
            # a record stored by a hub process of older code still running beside this one (a
            # rolling upgrade) has no time of its own: it counts as received now, never as 1970
            # (it was deleted at the next upload, the door counting it as held)
            self._q(c, "UPDATE access_records SET received = ? WHERE received = 0", (time.time(),))
        while True:
            with self._write() as c:
                keys = [tuple(row) for row in self._q(
                    c, "SELECT appid, edge_id, seq FROM access_records WHERE received < ? LIMIT ?", (before, batch))]
                self._executemany(c, "DELETE FROM access_crops WHERE appid = ? AND edge_id = ? AND seq = ?", keys)
                self._executemany(c, "DELETE FROM access_records WHERE appid = ? AND edge_id = ? AND seq = ?", keys)
            gone += len(keys)
            if len(keys) < batch:
                return gone

    def counted_claims(self, appid: str, since: float, until: float, per_edge: int,
                       person_id: str | None = None) -> list[tuple[str, float, str, str]]:
        """(person_id, at, edge_id, mark) of the decisions the edges' lockouts counted (the
        `counted` column: REFUSED or ADMITTED) with since <= at < until, of `person_id` only when
        given, of persons the appid has, the newest `per_edge` of each edge, oldest first. Read by
        the column and bounded per edge: a door uploading thousands of other records (or records
        dated far ahead, or naming persons nobody enrolled) no longer pushes the other doors'
        refusals out of what is read."""
        where = ("appid = ? AND counted <> '' AND at >= ? AND at < ? AND EXISTS (SELECT 1 FROM persons p"
                 " WHERE p.appid = access_records.appid AND p.person_id = access_records.person_id)")
        args: list = [appid, since, until]
        if person_id is not None:
            where += " AND person_id = ?"
            args.append(person_id)
        sql = ("SELECT person_id, at, edge_id, counted FROM (SELECT person_id, at, edge_id, counted, seq,"
               " ROW_NUMBER() OVER (PARTITION BY edge_id ORDER BY at DESC, seq DESC) AS newest"
               f" FROM access_records WHERE {where}) AS c WHERE newest <= ? ORDER BY at, edge_id, seq")  # noqa: S608
        with self._read() as c:
            rows = self._q(c, sql, (*args, per_edge)).fetchall()
        return [(str(p), float(at), str(e), str(mark)) for p, at, e, mark in rows]

    def search_access(self, appid: str, filters: dict[str, str], since: float | None = None,
                      until: float | None = None, after: tuple[float, str, int] | None = None,
                      limit: int = 100, newest_first: bool = False,
                      ) -> tuple[list[dict[str, Any]], tuple[float, str, int] | None]:
        """Records of the appid matching every filter (FILTERS) with since <= at < until, in
        (at, edge_id, seq) order after the keyset `after` (`newest_first`: the reverse order,
        before it); (records, the next `after` or None)."""
        where, args = ["appid = ?"], [appid]
        for name, value in filters.items():
            where.append(f"{FILTERS[name]} = ?")
            args.append(value)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if until is not None:
            where.append("at < ?")
            args.append(until)
        if after is not None:
            beyond = "<" if newest_first else ">"
            where.append(f"(at {beyond} ? OR (at = ? AND (edge_id {beyond} ? OR (edge_id = ? AND seq {beyond} ?))))")
            args += [after[0], after[0], after[1], after[1], after[2]]
        order = "at DESC, edge_id DESC, seq DESC" if newest_first else "at, edge_id, seq"
        sql = ("SELECT edge_id, body FROM access_records WHERE " + " AND ".join(where)  # noqa: S608 (names from FILTERS)
               + f" ORDER BY {order} LIMIT ?")
        with self._read() as c:
            rows = self._q(c, sql, (*args, limit + 1)).fetchall()
        out = [{"edge_id": e, **json.loads(b)} for e, b in rows[:limit]]
        more = len(rows) > limit
        return out, ((out[-1]["at"], out[-1]["edge_id"], out[-1]["seq"]) if more else None)
