"""The edge's access log: every door decision, grant, deny, exit, alarm and rule change, in an
append-only, hash-chained SQLite file (docs/access.md).

Each record carries the hash of the one before (edge.core.access_chain); the chain's head (the
last seq and hash) is signed with the log's own key (HMAC-SHA256) and stored with each append,
in the same transaction. Whoever edits, deletes or reorders records without the key is found
by `verify()`: a record's hash no longer matches, a link or a number is missing, or the head's
signature does not match the last record. synchronous=FULL: a decision the door acted on is in
the log after a power cut.

Retention: `prune(now)` deletes records older than `retention_days`, but only those already
uploaded to the hub, and only a prefix: the hash of the last pruned record is kept as the
signed anchor the remaining chain starts from, so the chain stays verifiable end to end.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edge.core.access_chain import (
    EVIDENCE_FIELDS,
    GENESIS,
    KINDS,
    ChainEnd,
    ChainError,
    canonical,
    follow,
    record_hash,
    sign_end,
    sign_head,
)
from edge.core.sqlitedb import open_durable, transaction
from edge.door.log_crops import sha256_of

log = logging.getLogger(__name__)

# `body` is the record (what the chain covers); person_id, door and granted are copies for the
# anti-passback look-up (`last_grant`), not part of the chain.
# meta key set once the head and anchor are signed by role (access_chain.sign_end): from then on
# a signature made the way logs were before (no role) is not taken. New logs have it from the start.
SIGNED_BY_ROLE = "signed_by_role"
# records pruned per transaction (about 15 ms on x86, a Pi a few times that): a decision's record
# waits for the lock at most one batch
PRUNE_BATCH = 2000

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (seq INTEGER PRIMARY KEY, body TEXT NOT NULL,
    person_id TEXT NOT NULL DEFAULT '', door TEXT NOT NULL DEFAULT '', at REAL NOT NULL DEFAULT 0,
    granted INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS records_grants ON records (person_id, door, at) WHERE granted = 1;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS crops (seq INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, sealed BLOB NOT NULL);
"""
# `crops`: a decision's sealed face crop (edge.door.log_crops), only where the site enables them;
# the record's detail.face_crop is its sha256, so the chain covers the hash, not the image.


@dataclass
class VerifyReport:
    ok: bool
    records: int
    first: int  # the first seq kept (after the anchor)
    last: int
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"ok": self.ok, "records": self.records, "first": self.first, "last": self.last,
                "problems": self.problems}


class HeadNotSigned(Exception):
    """The stored head is not one this edge signed over its last record (the file edited, or
    another key): no record is appended to it, since signing it would vouch for what was done."""


class AccessLog:
    """`AccessLog(path, key).append(kind, **fields) -> record` (a dict, as stored and uploaded);
    also the evaluator's `AccessHistory` (`last_grant`).

    `key` is the edge's own secret (edge.daemon.api_key), as bytes; `clock` gives the records'
    wall-clock time (injected in tests)."""

    def __init__(self, path: str | Path, key: bytes, *, retention_days: float | None = None,
                 clock: Callable[[], float] = time.time, former_key: bytes | None = None,
                 crops_max_bytes: int | None = None, waits_for_hub: bool = True):
        if not key:
            raise ValueError("the access log needs the edge's key to sign its head")
        self.path = Path(path)
        self._key = key
        self.retention_days = retention_days
        # The face crops' budget on the card, oldest deleted first beyond it (None: age only):
        # a year of a busy door's crops is gigabytes.
        self.crops_max_bytes = crops_max_bytes
        # Records past retention wait for the hub to hold them (its copy is the evidence); an
        # edge with no hub has none to wait for, and kept every record for good.
        self.waits_for_hub = waits_for_hub
        self._clock = clock
        self._lock = threading.Lock()
        self._db = open_durable(self.path)
        self._db.executescript(SCHEMA)
        with transaction(self._db):  # a new log is signed by role from its first record
            if not self._db.execute("SELECT 1 FROM meta UNION ALL SELECT 1 FROM records LIMIT 1").fetchone():
                self._db.execute("INSERT INTO meta VALUES (?, '1')", (SIGNED_BY_ROLE,))
        if former_key:
            self._sign_anew(former_key)

    def _sign_anew(self, former_key: bytes) -> None:
        """A log written before (its head and anchor signed without their role, under this key
        or under `former_key`, the local API's secret, before edge.daemon.log_key) is signed
        again under this key by role, once: then it is marked, and neither the old way nor the
        former key is taken for it again (the former key is the badge reader's: taken after,
        it would re-sign a log its holder rewrote)."""
        with self._lock, transaction(self._db):
            if self._meta(SIGNED_BY_ROLE):
                return
            ends = {name: json.loads(self._meta(name)) for name in ("head", "anchor") if self._meta(name)}
            try:
                for v in ends.values():
                    seq, digest, mac = int(v["seq"]), str(v["hash"]), str(v.get("hmac", ""))
                    if not any(hmac.compare_digest(mac, sig) for sig in (
                            sign_head(self._key, seq, digest), sign_head(former_key, seq, digest))):
                        return  # signed by none of them: left as it is, for `log verify` and the head check
            except (ValueError, KeyError, TypeError, AttributeError):
                return
            for name, v in ends.items():
                self._store_end(name, ChainEnd(int(v["seq"]), str(v["hash"])))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, '1')", (SIGNED_BY_ROLE,))
        if ends:
            log.warning("access log %s: its head signed again, by role, under the log's own key", self.path)

    def _signed(self, name: str, value: dict[str, Any]) -> bool:
        """Whether `value`, stored as `name`, is signed by this key in that role (or, in a log
        never signed by role, the way logs were signed before)."""
        seq, digest, mac = int(value["seq"]), str(value["hash"]), str(value.get("hmac", ""))
        if hmac.compare_digest(mac, sign_end(self._key, name, seq, digest)):
            return True
        return not self._meta(SIGNED_BY_ROLE) and hmac.compare_digest(mac, sign_head(self._key, seq, digest))

    # --- meta -------------------------------------------------------------------------------
    def _meta(self, key: str, default: str = "") -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def _end(self, name: str) -> ChainEnd:
        """The chain position stored under `name` ("head" or "anchor"), GENESIS when none."""
        raw = self._meta(name)
        if not raw:
            return ChainEnd(0, GENESIS)
        value = json.loads(raw)
        return ChainEnd(int(value["seq"]), str(value["hash"]))

    def _signed_head(self) -> ChainEnd:
        """The head to extend: signed by this edge's key and naming the last record stored (or
        none, with no record). Without this check the daemon signed whatever head it found:
        records rewritten in the file (their hashes recomputed, the head's signature left wrong)
        passed `log verify` after the next record, and anyone who could write the file but
        never read the key could rewrite every record not yet uploaded. HeadNotSigned else."""
        raw = self._meta("head")
        last = self._db.execute("SELECT seq, body FROM records ORDER BY seq DESC LIMIT 1").fetchone()
        if not raw:
            if last is not None:
                raise HeadNotSigned("records without a signed head")
            return ChainEnd(0, GENESIS)
        try:
            value = json.loads(raw)
            end = ChainEnd(int(value["seq"]), str(value["hash"]))
            signed = self._signed("head", value)
            matches = (last is None and end == self._end("anchor")) or (
                last is not None and int(last[0]) == end.seq and json.loads(last[1]).get("hash") == end.hash)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise HeadNotSigned("the head is unreadable") from None
        if not signed:
            raise HeadNotSigned("the head's signature does not match this edge's key")
        if not matches:
            raise HeadNotSigned(f"the signed head (record {end.seq}) is not the last record stored")
        return end

    def _store_end(self, name: str, end: ChainEnd) -> None:
        value = {"seq": end.seq, "hash": end.hash, "hmac": sign_end(self._key, name, end.seq, end.hash)}
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, canonical(value)))

    # --- writing ----------------------------------------------------------------------------
    def append(self, kind: str, *, face_crop: bytes | None = None, **fields: Any) -> dict[str, Any]:
        """Append one record (fields from EVIDENCE_FIELDS; None values are left out) and sign the
        new head; the record as stored. ValueError for an unknown kind or field. `face_crop` (a
        sealed crop, edge.door.log_crops) is kept beside the record, which names its sha256 in
        `detail.face_crop`."""
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {sorted(KINDS)}")
        unknown = set(fields) - EVIDENCE_FIELDS
        if unknown:
            raise ValueError(f"unknown access log field {sorted(unknown)[0]!r}")
        if face_crop is not None and not (isinstance(face_crop, bytes) and face_crop):
            raise ValueError("face_crop is a sealed crop's bytes (edge.door.log_crops)")
        with self._lock, transaction(self._db):
            head = self._signed_head()
            record: dict[str, Any] = {k: v for k, v in fields.items() if v is not None}
            record.update(seq=head.seq + 1, record_id=uuid.uuid4().hex, at=float(self._clock()), kind=kind,
                          prev=head.hash)
            self._note_clock_jump(head, record)
            if face_crop is not None:
                detail = record.get("detail")
                record["detail"] = {**(detail if isinstance(detail, dict) else {}), "face_crop": sha256_of(face_crop)}
            record["hash"] = record_hash(record)  # ValueError for NaN or what JSON cannot hold
            self._db.execute("INSERT INTO records (seq, body, person_id, door, at, granted) VALUES (?, ?, ?, ?, ?, ?)",
                             (record["seq"], canonical(record), str(record.get("person_id", "")),
                              str(record.get("door", "")), record["at"], int(record.get("outcome") == "grant")))
            if face_crop is not None:
                self._db.execute("INSERT INTO crops (seq, sha256, sealed) VALUES (?, ?, ?)",
                                 (record["seq"], record["detail"]["face_crop"], bytes(face_crop)))
            self._store_end("head", ChainEnd(record["seq"], record["hash"]))
        return record

    def _note_clock_jump(self, head: ChainEnd, record: dict[str, Any]) -> None:
        """A record earlier than the one before means the wall clock went back (NTP step, RTC
        reset): the order stays the chain's, and the record says by how much, for the operator."""
        if head.seq == 0:
            return
        row = self._db.execute("SELECT body FROM records WHERE seq = ?", (head.seq,)).fetchone()
        before = json.loads(row[0])["at"] if row else None
        if before is not None and record["at"] < before:
            back = round(before - record["at"], 3)
            log.warning("access log: the clock went back %.3f s since the record before", back)
            detail = record.get("detail")
            record["detail"] = {**(detail if isinstance(detail, dict) else {}), "clock_back_s": back}

    def mark_uploaded(self, seq: int) -> None:
        """The hub stored every record up to `seq` (the uploader's cursor)."""
        with self._lock, transaction(self._db):
            if seq > int(self._meta("uploaded", "0")):
                self._db.execute("INSERT OR REPLACE INTO meta VALUES ('uploaded', ?)", (str(int(seq)),))

    def resend_after(self, seq: int) -> bool:
        """The hub holds records up to `seq` only, fewer than the cursor says (a hub restored from
        a backup): move the cursor back to `seq` when this log still holds every record after it,
        so they go again (the hub checks them against its own end of the chain, so nothing is
        re-based); False when it does not (pruned since: those are lost to the hub)."""
        with self._lock, transaction(self._db):
            if not 0 <= seq < int(self._meta("uploaded", "0")):
                return False
            first = self._db.execute("SELECT MIN(seq) FROM records").fetchone()[0]
            if first is None or first > seq + 1:
                return False
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('uploaded', ?)", (str(int(seq)),))
        return True

    @property
    def uploaded(self) -> int:
        with self._lock:
            return int(self._meta("uploaded", "0"))

    def prune(self, now: float | None = None, *, batches: int | None = None) -> int:
        """Delete the records past retention that the hub already has (a prefix of the chain),
        keeping the last one's hash as the signed anchor; how many went. In batches of
        PRUNE_BATCH, at most `batches` of them (None: until none is left), the lock let go
        between two: the first prune after lowering log_retention_days on a year's log took
        seconds on a Pi, and a decision's record waited behind it."""
        if self.retention_days is None:
            return 0
        cutoff = (self._clock() if now is None else now) - self.retention_days * 86400
        gone, done = 0, 0
        while batches is None or done < batches:
            pruned = self._prune_batch(cutoff)
            gone, done = gone + pruned, done + 1
            if pruned < PRUNE_BATCH:
                break
        if gone:
            log.info("access log: %d record(s) older than %g days pruned", gone, self.retention_days)
        return gone

    def _prune_batch(self, cutoff: float) -> int:
        with self._lock, transaction(self._db):
            uploaded = int(self._meta("uploaded", "0")) if self.waits_for_hub else 2**62
            last: tuple[int, str] | None = None
            for seq, body in self._db.execute("SELECT seq, body FROM records WHERE seq <= ? ORDER BY seq LIMIT ?",
                                              (uploaded, PRUNE_BATCH)):
                record = json.loads(body)
                if record["at"] >= cutoff:
                    break
                last = (seq, record["hash"])
            if last is None:
                return 0
            gone: int = self._db.execute("DELETE FROM records WHERE seq <= ?", (last[0],)).rowcount
            self._db.execute("DELETE FROM crops WHERE seq <= ?", (last[0],))  # a crop goes with its record
            self._store_end("anchor", ChainEnd(*last))
        return gone

    def prune_crops(self, now: float | None = None) -> int:
        """Delete the face crops of records past retention, uploaded or not; how many went.
        Records wait for the hub (their evidence is its copy), crops never did: without a hub, or
        with uploads refused, every face was kept for good. The chain holds a crop's hash, not
        the crop, so it still verifies."""
        gone = 0
        if self.retention_days is not None:
            cutoff = (self._clock() if now is None else now) - self.retention_days * 86400
            with self._lock, transaction(self._db):
                # over the crops (few), each record found by its seq: `records` has no index on
                # `at`, and this runs on the daemon's loop
                gone = self._db.execute("DELETE FROM crops WHERE (SELECT at FROM records"
                                        " WHERE records.seq = crops.seq) < ?", (cutoff,)).rowcount
            if gone:
                log.info("access log: %d face crop(s) older than %g days deleted", gone, self.retention_days)
        return gone + self._crops_within_budget()

    def _crops_within_budget(self) -> int:
        """The oldest crops deleted until the rest fit `crops_max_bytes`; how many went."""
        if self.crops_max_bytes is None:
            return 0
        gone = 0
        with self._lock, transaction(self._db):
            (total,) = self._db.execute("SELECT COALESCE(SUM(length(sealed)), 0) FROM crops").fetchone()
            if total > self.crops_max_bytes:
                over, doomed = total - self.crops_max_bytes, []
                for seq, size in self._db.execute("SELECT seq, length(sealed) FROM crops ORDER BY seq"):
                    doomed.append((seq,))
                    over -= size
                    if over <= 0:
                        break
                self._db.executemany("DELETE FROM crops WHERE seq = ?", doomed)
                gone = len(doomed)
        if gone:
            log.warning("access log: %d oldest face crop(s) deleted: the crops were over [door] log_crops_max_bytes "
                        "(%d bytes)", gone, self.crops_max_bytes)
        return gone

    # --- reading ----------------------------------------------------------------------------
    def last_grant(self, person_id: str, door: str | None = None) -> float | None:
        """The `AccessHistory` of the evaluator: when the person was last granted (at `door`, or
        at any door), from the records with outcome = "grant"; None when never (or pruned).
        The last grant is the last one written (by seq), not the one of the latest time: after
        the clock was set back, the latest time stayed the one before the jump, and grants a
        few seconds apart each looked far from it (timed anti-passback let both through)."""
        sql, args = "SELECT at FROM records WHERE granted = 1 AND person_id = ?", [person_id]
        if door is not None:
            sql, args = sql + " AND door = ?", [*args, door]
        with self._lock:
            row = self._db.execute(sql + " ORDER BY seq DESC LIMIT 1", args).fetchone()
        return None if row is None else float(row[0])

    def last_door(self, person_id: str, doors: tuple[str, ...]) -> str | None:
        """The `AccessHistory` of in/out anti-passback: which of `doors` the person was last
        granted at, by seq (by time, a clock set back made the entry before the jump the last
        one, and the person could enter again and again without leaving)."""
        if not doors:
            return None
        marks = ", ".join("?" * len(doors))
        with self._lock:
            row = self._db.execute(f"SELECT door FROM records WHERE granted = 1 AND person_id = ? AND door IN ({marks})"
                                   " ORDER BY seq DESC LIMIT 1", (person_id, *doors)).fetchone()
        return None if row is None else str(row[0])

    def records(self, after: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        """Records with seq > `after` in order (the uploader's batches)."""
        with self._lock:
            rows = self._db.execute("SELECT body FROM records WHERE seq > ? ORDER BY seq LIMIT ?",
                                    (after, limit)).fetchall()
        return [json.loads(body) for (body,) in rows]

    def crops(self, first: int, last: int) -> dict[int, bytes]:
        """The sealed face crops of the records `first`..`last`, by seq (those that have one)."""
        with self._lock:
            rows = self._db.execute("SELECT seq, sealed FROM crops WHERE seq BETWEEN ? AND ? ORDER BY seq",
                                    (first, last)).fetchall()
        return {int(seq): bytes(sealed) for seq, sealed in rows}

    def head(self) -> dict[str, Any]:
        """The signed head and anchor, as stored: {"head": {seq, hash, hmac}, "anchor": ...}."""
        with self._lock:
            return {name: json.loads(self._meta(name)) if self._meta(name) else None for name in ("head", "anchor")}

    def verify(self) -> VerifyReport:
        """Walk the whole chain from its anchor: every hash, link and number, then the signed
        head against the last record. Never raises for what it finds: it reports it."""
        problems: list[str] = []
        # one read transaction: its snapshot, whatever the daemon appends or prunes meanwhile
        # (separate statements once read a head, then records past it: "broken", then sound)
        with self._lock, transaction(self._db, immediate=False):
            try:
                anchor, head = self._end("anchor"), self._end("head")
                for name in ("anchor", "head"):
                    value = json.loads(self._meta(name) or "null")
                    if value is not None and not self._signed(name, value):
                        problems.append(f"{name} signature does not match (not this edge's key, or edited)")
            except (ValueError, KeyError, TypeError, AttributeError):
                return VerifyReport(False, 0, 0, 0, ["head or anchor unreadable"])
            rows = self._db.execute("SELECT seq, body, person_id, door, at, granted FROM records ORDER BY seq"
                                    ).fetchall()
            crops = self._db.execute("SELECT seq, sealed FROM crops ORDER BY seq").fetchall()
        end, count, linked = anchor, 0, {}
        for seq, body, *copied in rows:
            try:
                record = json.loads(body)
                if not isinstance(record, dict) or record.get("seq") != seq:
                    raise ChainError("reordered", seq, "the record stored at this place names another seq")
                # the columns the evaluator reads (anti-passback's last grant) are copies of the
                # body, outside the chain: one set to 0 let a passback through, the chain sound
                if copied != [str(record.get("person_id", "")), str(record.get("door", "")), record.get("at"),
                              int(record.get("outcome") == "grant")]:
                    raise ChainError("edited", seq, "the columns the access rules read differ from the record")
                end = follow([record], end)
                count += 1
                detail = record.get("detail")
                linked[seq] = detail.get("face_crop") if isinstance(detail, dict) else None
            except ChainError as exc:
                problems.append(str(exc))
                break
            except ValueError:
                problems.append(f"malformed at record {seq}: not JSON")
                break
        if not problems and (end.seq, end.hash) != (head.seq, head.hash):
            problems.append(f"the signed head is record {head.seq}, the chain ends at {end.seq}"
                            " (records deleted at the end, or the head edited)")
        if not problems:  # a crop is the one its record names (swapped or altered ones are not)
            problems += [f"face crop of record {seq} does not match its record" for seq, sealed in crops
                         if linked.get(seq) != sha256_of(bytes(sealed))][:1]
        return VerifyReport(not problems, count, anchor.seq + 1, end.seq, problems)

    def close(self) -> None:
        with self._lock:
            self._db.close()
