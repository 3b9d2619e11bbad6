"""Opening the edge's own SQLite files (sync cache, event outbox) the one durable way."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_durable(path: str | Path) -> sqlite3.Connection:
    """A connection in WAL mode with synchronous=FULL: a committed row survives a power cut.

    Autocommit (isolation_level=None) so callers open their transactions explicitly; shared
    across threads, so callers serialise access with their own lock.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    return db
