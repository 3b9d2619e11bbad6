"""Persistence of the hub: persons, groups, faces, embeddings, change log, verify log.

`Store` is the small interface the API layer uses; `SqliteStore` is the embedded backend.
A PostgreSQL backend implements the same `Store` methods (no SQLite-isms cross the interface).
"""

from edge.store.base import (
    Change,
    FaceRecord,
    Limits,
    NearIdentical,
    PersonRecord,
    Store,
    SyncPage,
    VerifyRecord,
)
from edge.store.sqlite import SqliteStore

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
]
