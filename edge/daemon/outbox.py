"""The outbox: decision events waiting for the broker's acknowledgement, on disk, in order.

An event the daemon has decided must survive a broker outage, a restart and a power cut, so it
is committed to SQLite (WAL, synchronous=FULL) before anything is sent, and its row is deleted
only once the broker has acknowledged it (edge.daemon.mqtt does both). Rows keep the order they
were decided in (their id). The outbox holds at most `max_rows`: beyond, the oldest rows are
dropped and counted, so after a long outage the newest decisions, the ones a door still acts
on, are the ones kept. A row the MQTT client refuses is moved aside to `outbox_rejected` for a
human instead of blocking the rows behind it; nothing is dropped silently.

While the disk takes no writes (full), `HeldEvents` stands in for it: at most HELD_MAX events
in memory, the oldest dropped and counted beyond, until the outbox can take them again or the
broker has acknowledged them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from pathlib import Path

from edge.core.sqlitedb import open_durable, transaction
from edge.daemon.event_age import Born

log = logging.getLogger(__name__)

HELD_MAX = 1000  # events held in memory while the outbox cannot be written (full disk)

Held = tuple[str, str, bytes, Born | None]  # event_id, topic, payload, when decided (event_age)
Row = tuple[int, str, bytes, Born | None]  # row id, topic, payload, when decided


class Outbox:
    """Events waiting for their broker acknowledgement, in order, on disk.

    At most `max_rows` and `max_bytes` of payloads: adding to a full outbox drops the oldest rows
    (`dropped` counts them), so after a long outage the newest decisions, the ones a door still
    acts on, go out. The bytes too: with face images (~41 KB an event) 100,000 rows were 4 GB of
    an SD card.
    """

    def __init__(self, path: str | Path, max_rows: int = 100_000, max_bytes: int = 512 * 1024 * 1024):
        self.path = Path(path)
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.dropped = 0  # since this process started
        self.dropped_through = 0  # the newest row id dropped
        self._lock = threading.Lock()
        self._db = open_durable(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " event_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL,"
            " created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))")
        # Rows paho refuses (bad topic or payload: hand-edited file, older version) are moved
        # here instead of blocking every later event; kept for a human, never silently dropped.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox_rejected (id INTEGER PRIMARY KEY,"
            " event_id TEXT NOT NULL, topic TEXT, payload BLOB, created TEXT, reason TEXT NOT NULL)")
        # When each event was decided on the boot clock (edge.daemon.event_age): its age for
        # stale_accept_s, which a step of the wall clock does not move. NULL in rows an older
        # version stored: those are aged by their timestamp.
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(outbox)")}
        for column, kind in (("born_boot", "TEXT"), ("born_at", "REAL")):
            if column not in columns:
                self._db.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
        self._depth, self._bytes = (int(v) for v in self._db.execute(
            "SELECT count(*), COALESCE(SUM(length(payload)), 0) FROM outbox").fetchone())

    def add(self, event_id: str, topic: str, payload: bytes, born: Born | None = None) -> int:
        row = (event_id, topic, payload, born.boot if born else None, born.at if born else None)
        insert = "INSERT INTO outbox (event_id, topic, payload, born_boot, born_at) VALUES (?,?,?,?,?)"
        with self._lock:
            over_rows = self._depth + 1 - self.max_rows
            over_bytes = self._bytes + len(payload) - self.max_bytes
            if over_rows <= 0 and over_bytes <= 0:
                cur = self._db.execute(insert, row)
            else:
                with transaction(self._db):
                    cut, freed, gone = 0, 0, 0
                    for row_id, size in self._db.execute("SELECT id, length(payload) FROM outbox ORDER BY id"):
                        if gone >= over_rows and freed >= over_bytes:
                            break
                        cut, freed, gone = row_id, freed + size, gone + 1
                    if gone:
                        self._db.execute("DELETE FROM outbox WHERE id <= ?", (cut,))
                    cur = self._db.execute(insert, row)
                if not self.dropped and gone:
                    log.warning("outbox full (%d events or %d bytes): dropping the oldest to keep the newest",
                                self.max_rows, self.max_bytes)
                self.dropped += gone
                self.dropped_through = max(self.dropped_through, cut)
                self._depth -= gone
                self._bytes -= freed
            self._depth += 1
            self._bytes += len(payload)
            row_id = cur.lastrowid
            assert row_id is not None  # an INSERT that succeeded has one
            return int(row_id)

    def pending(self, after_id: int = 0, limit: int = 100) -> list[Row]:
        with self._lock:
            rows = list(self._db.execute(
                "SELECT id, topic, payload, born_boot, born_at FROM outbox WHERE id > ?"
                " ORDER BY id LIMIT ?", (after_id, limit)))
        return [(i, topic, payload, Born(boot, at) if boot is not None and at is not None else None)
                for i, topic, payload, boot, at in rows]

    def delete(self, *row_ids: int) -> None:
        """Remove acknowledged rows; several in one transaction (one fsync, not one each)."""
        if not row_ids:
            return
        with self._lock, transaction(self._db, immediate=False):
            (freed,) = self._db.execute("SELECT COALESCE(SUM(length(payload)), 0) FROM outbox WHERE id IN"
                                        f" ({', '.join('?' * len(row_ids))})", row_ids).fetchone()
            gone = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(r,) for r in row_ids]).rowcount
        self._depth -= gone
        self._bytes -= freed

    def reject(self, row_id: int, reason: str) -> None:
        """Move an unpublishable row aside (one transaction) so the rows after it can go."""
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO outbox_rejected (id, event_id, topic, payload, created,"
                " reason) SELECT id, event_id, topic, payload, created, ? FROM outbox WHERE id = ?",
                (reason[:500], row_id))
            (size,) = self._db.execute("SELECT COALESCE(SUM(length(payload)), 0) FROM outbox WHERE id = ?",
                                       (row_id,)).fetchone()
            gone = self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
        self._depth -= gone
        self._bytes -= int(size)

    def probe(self) -> None:
        """One small committed write: raises sqlite3.Error while the disk takes none."""
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL)")
            self._db.execute("INSERT OR REPLACE INTO probe VALUES (1, julianday('now'))")

    def depth(self) -> int:
        return self._depth  # kept in step by add/delete/reject: count(*) is a scan

    def rejected(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox_rejected").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class HeldEvents:
    """Events the outbox could not take (full disk), in memory, oldest first.

    At most `max_events`: holding one more drops the oldest (`dropped` counts them). An event
    leaves when the outbox takes it (`saved`) or the broker acknowledges it (`delivered`).
    Held from the main loop, saved and sent from the sender thread: the queue has a lock; the
    marks of what is on its way to the broker are the sender thread's alone.
    """

    def __init__(self, max_events: int = HELD_MAX):
        self.max_events = max_events
        self.dropped = 0
        self._events: deque[Held] = deque()
        self._lock = threading.Lock()
        self._sending: set[str] = set()  # event_ids handed to the broker directly, not yet acked

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def hold(self, event_id: str, topic: str, payload: bytes, born: Born | None = None) -> None:
        with self._lock:
            if len(self._events) >= self.max_events:
                self._events.popleft()
                self.dropped += 1
            self._events.append((event_id, topic, payload, born))

    def oldest(self) -> Held | None:
        with self._lock:
            return self._events[0] if self._events else None

    def saved(self, event_id: str) -> None:
        """The oldest event, `event_id`, is in the outbox now (unless it was dropped meanwhile)."""
        with self._lock:
            if self._events and self._events[0][0] == event_id:
                self._events.popleft()

    def unsent(self) -> list[Held]:
        """The held events not yet handed to the broker, oldest first."""
        with self._lock:
            return [h for h in self._events if h[0] not in self._sending]

    def sending(self, event_id: str) -> None:
        self._sending.add(event_id)

    def is_sending(self, event_id: str) -> bool:
        return event_id in self._sending

    def unsend_all(self) -> None:
        """A new connection: none of them is on its way any more."""
        self._sending.clear()

    def delivered(self, event_id: str) -> None:
        """The broker acknowledged `event_id`: nothing left to keep of it."""
        with self._lock:
            self._events = deque(h for h in self._events if h[0] != event_id)
        self._sending.discard(event_id)
