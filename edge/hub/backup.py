"""`edge-verifier hub backup --config hub.toml --to FILE`: a consistent copy of a running hub's
SQLite store.

Copying `hub.sqlite3` with `cp` while the hub runs misses what is still in its `-wal` file (a
person deleted a moment before came back in the copy). This copies through SQLite's online
backup (the pages as one snapshot, the hub serving on), into a new 0600 file, checks it, and
says what else to keep: the secrets file (the keys and the face crop key: crops cannot be read
without it), kept apart from the store. A PostgreSQL store is backed up with pg_dump
(docs/hub.md#backup-and-restore).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path

from edge.core.sqlitedb import open_read_only


class BackupError(Exception):
    pass


def backup_sqlite(source: str | Path, target: str | Path, progress=None) -> int:
    """Copy the SQLite store `source` into the new file `target` (0600, never over an existing
    file), checked with `PRAGMA integrity_check`; its size in bytes."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise BackupError(f"{source}: no such store file")
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{target} exists: name a new file") from None
    except OSError as exc:
        raise BackupError(f"{target}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        src = open_read_only(source)  # (a '#' in the path once copied an empty database, "checked")
        dst = sqlite3.connect(target)
        try:
            page_count = src.execute("PRAGMA page_count").fetchone()[0]
            page_size = src.execute("PRAGMA page_size").fetchone()[0]
            if progress is not None:
                progress(f"copying {page_count} pages ({page_count * page_size / 2**20:.0f} MiB) in one read snapshot")
            # One step: copied in steps, the backup starts again from page 0 whenever the hub
            # writes between two (a door's sync report, an upload), and on a busy hub never ended.
            # In WAL mode the one read snapshot does not hold the hub's writers back.
            src.backup(dst, pages=-1)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
            (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
            if verdict != "ok":
                raise BackupError(f"the copy does not check out: {verdict}")
            if dst.execute("PRAGMA user_version").fetchone() != src.execute("PRAGMA user_version").fetchone():
                raise BackupError("the copy's schema version is not the store's")
        finally:
            src.close()
            dst.close()
        with open(target, "rb") as fh:
            os.fsync(fh.fileno())
    except (sqlite3.Error, OSError, BackupError) as exc:
        _remove(target)
        raise BackupError(str(exc)) from None
    except BaseException:  # Ctrl-C: no partial copy left to be taken for a backup
        _remove(target)
        raise
    return target.stat().st_size


def _remove(target: Path) -> None:
    for leftover in (target, target.with_name(target.name + "-journal")):
        leftover.unlink(missing_ok=True)


def add_arguments(parser) -> None:
    parser.add_argument("--config", required=True, help="the hub's TOML ([storage] path names the store)")
    parser.add_argument("--to", dest="target", required=True, help="the new backup file (never overwritten)")


def run(args) -> int:
    from edge.core.settings import ConfigError
    from edge.hub import config

    def progress(msg: str) -> None:
        print(f"[backup] {msg}", file=sys.stderr, flush=True)

    try:
        settings = config.load(args.config)
        if settings.storage.url:
            raise BackupError("the store is PostgreSQL: back it up with pg_dump (docs/hub.md#backup-and-restore)")
        size = backup_sqlite(settings.storage.path, args.target, progress)
    except (ConfigError, BackupError) as exc:
        print(f"edge-verifier hub backup: {exc}", file=sys.stderr)
        return 1
    secrets = settings.secrets_file or "(none)"
    print(f"backed up {settings.storage.path} to {args.target} ({size} bytes), checked. Keep a copy of the secrets "
          f"file {secrets} apart from it: without its face crop key the crops cannot be read")
    return 0
