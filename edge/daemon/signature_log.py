"""The edge's record of the single-use signatures it has accepted (local API requests and
signed MQTT commands), in a SQLite file beside the outbox.

Kept in memory, a daemon restart forgot them, so a request or command captured on the network
could be played again just after a restart (a power cut at the door is enough). The hub keeps
its record in its store; this is the same table for the edge's one process.

The commands (60 s) and the local API (1 h) accept a single-use signature for different times
around its `t`, and share this table: every row is kept for KEEP_S, the longest of them, so a
signature one consumer took is refused by the other as long as that one would accept it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from edge.core import errors
from edge.core.errors import ApiError
from edge.core.signature import SINGLE_USE_WINDOW_S, ReplayCache
from edge.core.sqlitedb import open_durable, transaction

log = logging.getLogger("edge.daemon")

FILE_NAME = "signatures.db"
# The longest window of the consumers of the table: the local API's (commands accept 60 s).
KEEP_S = SINGLE_USE_WINDOW_S

_SCHEMA = """
CREATE TABLE IF NOT EXISTS used_signatures (key BLOB PRIMARY KEY, valid_until REAL NOT NULL);
CREATE INDEX IF NOT EXISTS used_signatures_by_expiry ON used_signatures (valid_until);
CREATE TABLE IF NOT EXISTS forgotten (id INTEGER PRIMARY KEY CHECK (id = 1), until REAL NOT NULL);
"""


class SignatureLog:
    """`claim_signature` as ReplayCache expects of a store; thread-safe."""

    def __init__(self, path: str | Path):
        self._db = open_durable(path)
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def claim_signature(self, key: bytes, valid_until: float, now: float) -> bool:
        """True if `key` was not remembered (and now is until `valid_until`).

        Rows are forgotten once their time is past; the latest time they were forgotten at is
        kept (`forgotten`), and a signature whose row would be gone by then is refused as used:
        it may have been. With the clock set back (an NTP step, a reboot without a real-time
        clock) to when a captured command was signed, the command was valid again and its row
        long deleted: a sniffed unlock opened the door a second time."""
        with self._lock:
            try:
                with transaction(self._db) as db:
                    row = db.execute("SELECT until FROM forgotten WHERE id = 1").fetchone()
                    forgotten = float(row[0]) if row else 0.0
                    if valid_until <= forgotten:
                        log.warning("a single-use signature older than what this edge remembers (its clock went "
                                    "back %.0f s?) refused as used; fresh ones are taken again in %.0f s",
                                    max(0.0, forgotten - now), forgotten - valid_until)
                        return False
                    db.execute("DELETE FROM used_signatures WHERE valid_until <= ?", (now,))
                    if now > forgotten:
                        db.execute("INSERT OR REPLACE INTO forgotten (id, until) VALUES (1, ?)", (now,))
                    return db.execute("INSERT OR IGNORE INTO used_signatures (key, valid_until) VALUES (?, ?)",
                                      (bytes(key), valid_until)).rowcount == 1
            except sqlite3.Error as exc:  # full disk: a signature that cannot be recorded is refused
                raise ApiError(errors.AUTH_UNAVAILABLE, "cannot record single-use signatures") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()


def replay_cache(storage_dir: str | Path, window_s: int | None = None) -> ReplayCache:
    """A ReplayCache for the edge (the API's window unless `window_s`), remembered across
    restarts in `storage_dir`, each signature for KEEP_S after its `t` whatever `window_s`."""
    window_s = SINGLE_USE_WINDOW_S if window_s is None else window_s
    if window_s > KEEP_S:  # ReplayCache would refuse it too: say which constant to raise
        raise ValueError(f"a window of {window_s} s needs signature_log.KEEP_S raised to it")
    return ReplayCache(window_s=window_s, store=SignatureLog(Path(storage_dir) / FILE_NAME), keep_s=KEEP_S)
