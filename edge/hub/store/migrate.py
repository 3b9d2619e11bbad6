"""`edge-verifier hub migrate --from sqlite:///PATH --to postgresql://...`: move a hub's store.

Every table is copied in batches (a progress line per batch on stderr) inside one PostgreSQL
transaction: a failed copy leaves the target as it was. The change log keeps its numbers, so the
edges' sync cursors stay valid, and the target's sequence continues after the highest one. At the
end each table's rows are counted on both sides; any difference fails the command. A target that
already holds persons, faces or changes is refused. Stop the hub before: a write during the copy
would be missed (the source is read in one snapshot). A file of older code is first brought up
to this code's schema, as the hub does when it opens it.
"""

from __future__ import annotations

import sqlite3
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from edge.core.redact import holds_password
from edge.core.sqlitedb import open_read_only

BATCH = 2000

# table -> columns, in foreign-key order; verify_log.ismatch is 0/1 in SQLite, boolean here
TABLES: dict[str, tuple[str, ...]] = {
    "persons": ("appid", "person_id", "person_name", "tag", "created"),
    "groups": ("appid", "group_id", "created"),
    "person_groups": ("appid", "person_id", "group_id"),
    "credentials": ("appid", "person_id", "position", "credential"),
    "faces": ("face_id", "appid", "person_id", "x", "y", "width", "height", "landmarks", "yaw", "pitch", "roll",
              "quality", "sharpness", "tag", "created"),
    "embeddings": ("face_id", "fingerprint", "vector"),
    "face_crops": ("face_id", "crop"),  # sealed: copied as they are, the key stays in secrets_file
    "changes": ("seq", "appid", "kind", "person_id", "face_id", "time"),
    "verify_log": ("session_id", "appid", "person_id", "score", "confidence", "ismatch", "time"),
    # the console's accounts (password hashes as they are); sessions are not copied: log in again
    "console_accounts": ("username", "appid", "role", "password", "created"),
    # access rules and the edges' access log (the chains' heads keep the next upload verifiable)
    "access_rules": ("appid", "version", "document", "updated"),
    "access_chains": ("appid", "edge_id", "seq", "hash", "refused", "last_refusal"),
    "access_records": ("appid", "edge_id", "seq", "record_id", "at", "kind", "door", "person_id", "decision",
                       "outcome", "reason", "hash", "body", "counted", "received"),
    "access_crops": ("appid", "edge_id", "seq", "sha256", "sealed"),  # sealed by the edge: copied as they are
    "claim_lifts": ("appid", "person_id", "at", "lifted_by"),
    # who has been in which group: a filtered sync's deletions (edge.hub.store.sql.sync_page)
    "group_members_seen": ("appid", "group_id", "person_id"),
    # single-use signatures already used (left behind, one sniffed before the move was good
    # again after it), and what each door last reported (the console's Doors page)
    "used_signatures": ("key", "valid_until"),
    "edge_reports": ("appid", "edge_id", "last_contact", "cursor", "pack", "liveness", "door", "health", "key",
                     "groups"),
}


class MigrationError(Exception):
    pass


@dataclass
class Report:
    counts: dict[str, int]
    seconds: float


def _sqlite_path(url: str) -> str:
    if not url.startswith("sqlite:///"):
        raise MigrationError(f"--from must be sqlite:///PATH, got {url!r}")
    return url[len("sqlite:///"):]


def migrate_store(source_url: str, target_url: str, progress=None) -> Report:
    """Copy the SQLite store at `source_url` into the PostgreSQL database at `target_url`."""
    import psycopg

    from edge.hub.store.postgres import PostgresStore

    path = _sqlite_path(source_url)
    if not target_url.startswith(("postgresql://", "postgres://")):
        raise MigrationError("--to must be postgresql://...")
    if holds_password(target_url):  # a command line is every local user's to read (ps, /proc)
        raise MigrationError("--to holds a password: put it in ~/.pgpass (or the file PGPASSFILE names), "
                             "not on the command line")
    progress = progress or (lambda msg: None)
    t0 = time.monotonic()
    _upgrade(path)
    try:
        src = open_read_only(path)
    except sqlite3.OperationalError as exc:
        raise MigrationError(f"cannot open {path}: {exc}") from None
    PostgresStore(target_url).close()  # creates or migrates the target's schema
    try:
        src.execute("BEGIN")  # one snapshot of the source
        totals = {t: src.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608
        with psycopg.connect(target_url) as dst, dst.transaction():
            for table in ("persons", "faces", "changes"):
                if dst.execute(f"SELECT EXISTS (SELECT 1 FROM {table})").fetchone()[0]:  # noqa: S608
                    raise MigrationError(f"the target already holds {table}: migrate into an empty database")
            for table, cols in TABLES.items():
                _copy(src, dst, table, cols, totals[table], progress)
            dst.execute("SELECT setval(pg_get_serial_sequence('changes', 'seq'),"
                        " GREATEST((SELECT MAX(seq) FROM changes), 1), (SELECT COUNT(*) > 0 FROM changes))")
        with psycopg.connect(target_url) as dst:
            copied = {t: dst.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}  # noqa: S608
    finally:
        src.close()
    wrong = {t: (totals[t], copied[t]) for t in TABLES if totals[t] != copied[t]}
    if wrong:
        raise MigrationError(f"row counts differ (source, target): {wrong}")
    return Report(totals, time.monotonic() - t0)


def _upgrade(path: str) -> None:
    """Bring a file an older hub wrote to this code's schema, as the hub does when it opens it:
    tables added since are made (and the groups its persons were in filled in), so every table is
    there to copy and the copy answers like the file would."""

    from edge.hub.store.sqlite import SqliteStore

    if not Path(path).is_file():
        raise MigrationError(f"cannot open {path}: no such file")
    try:
        SqliteStore(path).close()
    except (RuntimeError, sqlite3.Error) as exc:  # a damaged file, one of newer code
        raise MigrationError(f"cannot open {path}: {exc}") from None


def _copy(src: sqlite3.Connection, dst, table: str, cols: tuple[str, ...], total: int, progress) -> None:
    names = ", ".join(cols)
    done = 0
    rows = src.execute(f"SELECT {names} FROM {table}")  # noqa: S608 (names from TABLES)
    with dst.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        while batch := rows.fetchmany(BATCH):
            for row in batch:
                if table == "verify_log":
                    row = (*row[:5], bool(row[5]), row[6])
                copy.write_row(row)
            done += len(batch)
            progress(f"{table}: {done}/{total}")
    if not total:
        progress(f"{table}: 0/0")


def add_arguments(parser) -> None:
    parser.add_argument("--from", dest="source", required=True, metavar="sqlite:///PATH",
                        help="the SQLite store to copy (the hub using it stopped)")
    parser.add_argument("--to", dest="target", required=True, metavar="postgresql://...",
                        help="an empty PostgreSQL database (its schema is created)")


def run(args) -> int:
    from edge.hub.store import redact

    def progress(msg: str) -> None:
        print(f"[migrate] {msg}", file=sys.stderr, flush=True)

    import psycopg

    try:
        report = migrate_store(args.source, args.target, progress)
    except (MigrationError, psycopg.Error, RuntimeError) as exc:
        print(f"edge-verifier hub migrate: {exc}", file=sys.stderr)
        return 1
    counts = ", ".join(f"{t} {n}" for t, n in report.counts.items())
    print(f"migrated {args.source} to {redact(args.target)} in {report.seconds:.1f} s; rows checked equal: {counts}")
    return 0
