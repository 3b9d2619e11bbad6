"""Opening the edge's own SQLite files (sync cache, event outbox) the one durable way."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path


def create_private(path: str | Path) -> None:
    """Create a database file mode 0600 (its new directory 0700) before SQLite opens it.

    SQLite creates files with the process umask (0644 outside systemd: faces and embeddings
    readable by every local user) and gives the -wal and -shm files the main file's mode.
    An existing file keeps the mode its operator chose.
    """
    path = Path(path)
    if str(path) == ":memory:":
        return
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def open_durable(path: str | Path) -> sqlite3.Connection:
    """A connection in WAL mode with synchronous=FULL: a committed row survives a power cut.

    Autocommit (isolation_level=None) so callers open their transactions explicitly; shared
    across threads, so callers serialise access with their own lock.
    """
    path = Path(path)
    create_private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    return db
