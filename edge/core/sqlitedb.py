"""SQLite the one way: the edge's own files (sync cache, event outbox) opened durably, and one
transaction helper for them and the hub's store."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
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


class DamagedDatabase(sqlite3.DatabaseError):
    """A data file SQLite cannot read: not a database, or its header or schema damaged (a failing
    SD card, a file copied over it). Says which file and what to do, instead of a traceback."""

    def __init__(self, path: Path, cause: sqlite3.DatabaseError):
        super().__init__(f"{path}: {cause}: the file is damaged or not an SQLite database. Stop the "
                         "service, then restore the file from a backup, or move it aside (keep it: what "
                         "it holds may still be recovered) and start afresh")
        self.path, self.cause = path, cause


WAL_LIMIT_BYTES = 4 * 1024 * 1024  # a -wal file's size kept after a checkpoint (open_durable)


def open_read_only(path: str | Path) -> sqlite3.Connection:
    """The SQLite file at `path`, read-only. Named by a file: URI built from the path: written in
    as `file:{path}`, a '#' or '?' in it ended the path and an empty database beside it was
    opened read-write instead."""
    return sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)


def open_durable(path: str | Path) -> sqlite3.Connection:
    """A connection in WAL mode with synchronous=FULL: a committed row survives a power cut.

    Autocommit (isolation_level=None) so callers open their transactions explicitly; shared
    across threads, so callers serialise access with their own lock. DamagedDatabase when the
    file's header or schema cannot be read.
    """
    path = Path(path)
    create_private(path)
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()  # reads the schema page
    except sqlite3.DatabaseError as exc:
        db.close()
        raise DamagedDatabase(path, exc) from None
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=5000")
    # A -wal file shrinks back to this at each checkpoint: after one large transaction (a cache
    # emptied for a new pack, 5,000 faces) it stayed at its peak for good (20.8 MB on an SD card).
    db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
    return db


@contextmanager
def transaction(db: sqlite3.Connection, *, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """One explicit transaction on an autocommit connection: COMMIT when the block ends, ROLLBACK
    when it raises (or the COMMIT fails, e.g. disk full), and the exception goes on.

    immediate: take the write lock at BEGIN, so two writers never deadlock upgrading a read lock.
    """
    db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass  # the exception being raised says more
        raise
