"""Persistence of the hub: persons, groups, faces, embeddings, change log, verify log.

`Store` is the small interface the API layer uses; `SqliteStore` is the embedded backend,
`PostgresStore` (edge.hub.store.postgres, optional dependency psycopg) the one several hub processes
share. `open_store` picks one from the `[storage]` settings.
"""

from edge.core.errors import StoreUnavailable
from edge.core.redact import without_password
from edge.hub.store.base import (
    Change,
    FaceRecord,
    Limits,
    NearIdentical,
    PersonRecord,
    Store,
    SyncPage,
    VerifyRecord,
)
from edge.hub.store.sqlite import SqliteStore


def open_store(url: str, sqlite_path: str = "") -> Store:
    """The store named by `url` (sqlite:///PATH or postgresql://...); SQLite at `sqlite_path`
    when `url` is empty."""
    if not url:
        return SqliteStore(sqlite_path)
    if url.startswith("sqlite:///"):
        return SqliteStore(url[len("sqlite:///"):])
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from edge.hub.store.postgres import PostgresStore
        except ImportError as exc:
            raise StoreUnavailable(f"a PostgreSQL store needs psycopg: pip install 'edge-verifier[postgresql]' ({exc})"
                               ) from None
        return PostgresStore(url)
    raise ValueError(f"storage url {redact(url)!r}: expected sqlite:///PATH or postgresql://...")


def redact(url: str) -> str:
    """`url` without its credentials, for logs and messages (the rule the camera urls follow)."""
    return without_password(url)


__all__ = [
    "Change",
    "FaceRecord",
    "Limits",
    "NearIdentical",
    "PersonRecord",
    "SqliteStore",
    "Store",
    "SyncPage",
    "VerifyRecord",
    "open_store",
    "redact",
]
