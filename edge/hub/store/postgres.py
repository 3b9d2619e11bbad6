"""`Store` on PostgreSQL, shared by several hub processes on one or more machines.

psycopg 3 with its connection pool: one pool per process, a connection per call for the time
of one transaction. The schema is created and migrated at start (`migrate`, numbered SQL files
in migrations/postgresql, applied under an advisory lock so processes starting together apply
each one once).

Every mutation of an appid takes that appid's transaction-scoped advisory lock before anything
else. Two consequences, both needed once several processes write:
- the count limits (faces per person, persons per group, groups per appid) are checked and
  enforced by one writer at a time, so two processes can never both add the 20th face;
- the change log's numbers of one appid are taken in commit order: a writer takes its numbers
  only after the previous writer of that appid committed, and keeps the lock until it commits.
  A sequence alone would not give that (a number is taken at insert, visible at commit), and a
  syncing edge that read past a later number would skip the earlier one for ever.
The model work happens before the transaction, so the lock is held for milliseconds.

A database error other than a violated constraint (connection lost, server down, pool
exhausted past its timeout, disk full) is ApiError -1200, remembered for `health()` until a
write succeeds again.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from edge.core import errors
from edge.core.errors import ApiError, StoreUnavailable
from edge.core.redact import url_without_password
from edge.hub.store.sql import SqlStore

MIGRATIONS = Path(__file__).parent / "migrations" / "postgresql"
# Advisory lock namespaces (first key of the two-key form): migrations, and writers per appid.
MIGRATION_LOCK = 1701
APPID_LOCK = 1702
# Of a process's pooled connections, at most this share may wait for one appid's writer lock.
# A writer holds its connection while it waits: one appid's writes queued behind its lock (a
# door's key re-sending its access log batch in a loop) took every connection, and every
# tenant's requests, the rate limiter's included, failed after the pool's timeout.
APPID_WRITERS_SHARE = 0.3
# Each connection's waits, so that nothing holds a request (or a stop) for good: a lock waited
# for this long is "busy" (code 15: a stopped or cut-off hub process held an appid's writer lock,
# idle in its transaction, and every write of that appid waited, each past its client's timeout,
# and the hub ignored SIGTERM for their threads); a session idle inside a transaction this long
# is ended by the server (that stopped process's), a statement this long cancelled; TCP
# keepalives find a dead peer. Each where the site set none (in the url, `options`, or by
# ALTER ROLE / DATABASE ... SET): a site's own value wins.
SESSION_LIMITS = {"lock_timeout": "5s", "idle_in_transaction_session_timeout": "60s",
                  "statement_timeout": "120s"}
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}



def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every numbered migration file, in order."""
    out = []
    for path in sorted(MIGRATIONS.glob("*.sql")):
        match = re.fullmatch(r"(\d+)_(\w+)\.sql", path.name)
        if match:
            out.append((int(match[1]), match[2], path.read_text()))
    return out


def migrate(conn) -> list[int]:
    """Apply the migrations this database lacks (one transaction); returns the versions applied.
    Refuses a database migrated by newer code."""
    applied = []
    with conn.transaction():
        # another process migrating holds the lock for as long as its migration takes, and a
        # migration may rewrite a large table: neither is bounded by the session's limits
        conn.execute("SET LOCAL lock_timeout = 0")
        conn.execute("SET LOCAL statement_timeout = 0")
        conn.execute("SELECT pg_advisory_xact_lock(%s, 0)", (MIGRATION_LOCK,))
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                     " name TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)")
        done = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        known = migrations()
        newest = max((v for v, _, _ in known), default=0)
        if done and max(done) > newest:
            raise StoreUnavailable(f"database schema version {max(done)} is newer than this code ({newest})")
        for version, name, sql in known:
            if version not in done:
                conn.execute(sql)
                conn.execute("INSERT INTO schema_migrations (version, name, applied) VALUES (%s, %s, %s)",
                             (version, name, time.time()))
                applied.append(version)
    return applied


def private_pgpassfile() -> None:
    """libpq ignores a PGPASSFILE that group or others may read (its warning, then a login
    without password), and systemd 254 and later hand the service its credentials on a tmpfs
    with an ACL entry, which `stat` shows as 0440. A PGPASSFILE that is one of the service's
    credentials (LoadCredential=, readable by the service alone) is copied to a 0600 file of
    this process (in the unit's private /tmp) and PGPASSFILE pointed at it."""
    import atexit
    import os
    import stat
    import tempfile

    from edge.core.settings import systemd_credential

    path = os.environ.get("PGPASSFILE")
    if not path or not systemd_credential(path):
        return
    try:
        if not os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            return
        text = Path(path).read_bytes()
    except OSError:
        return  # libpq says what is wrong with it
    fd, copy = tempfile.mkstemp(prefix="edge-hub-pgpass-")  # 0600
    with os.fdopen(fd, "wb") as out:
        out.write(text)
    atexit.register(lambda: Path(copy).unlink(missing_ok=True))
    os.environ["PGPASSFILE"] = copy


class PostgresStore(SqlStore):
    PARAM = "%s"

    def __init__(self, url: str, *, pool_size: int = 10, connect_timeout_s: float = 10.0):
        import psycopg
        from psycopg.conninfo import conninfo_to_dict
        from psycopg_pool import ConnectionPool, PoolTimeout

        unreadable = StoreUnavailable("[storage] url is not a PostgreSQL URL libpq can read (percent-encode "
                                      "the password's special characters: % as %25, @ as %40, / as %2F)")
        try:  # before the pool: its connection thread logged libpq's words, which quote the password
            params = conninfo_to_dict(url)
        except psycopg.ProgrammingError:
            raise unreadable from None
        # an unencoded `@` in the password: libpq reads from the first `@` on as the host and the
        # pool logged "failed to resolve host '<the password's tail>@...'" at every retry (a
        # socket folder named with `@`, in `?host=`, is no such thing)
        if url.partition("://")[2].split("/", 1)[0].count("@") > 1 and "@" in str(params.get("host", "")):
            raise unreadable from None
        private_pgpassfile()
        self.url = url
        self._failure: tuple[float, str] | None = None  # (when, why) of the last failed write
        self._wait_s = connect_timeout_s
        self._writers_per_appid = max(1, int(pool_size * APPID_WRITERS_SHARE))
        self._writers: dict[str, threading.BoundedSemaphore] = {}
        self._writers_lock = threading.Lock()
        self._pool = ConnectionPool(url, min_size=1, max_size=pool_size, timeout=connect_timeout_s,
                                    open=False, name="edge-hub", configure=_session_limits,
                                    kwargs={k: v for k, v in KEEPALIVES.items() if k not in params})
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout:
            self._pool.close()
            raise StoreUnavailable(f"the PostgreSQL store {url_without_password(url)} did not answer within "
                                   f"{connect_timeout_s:g} s (psycopg.pool's warnings above say why)") from None
        with self._pool.connection() as conn:
            self.applied_migrations = migrate(conn)

    # --- connections and transactions -----------------------------------------------------
    @contextmanager
    def _write(self, appid: str | None = None) -> Iterator:
        """One transaction; with `appid`, holding that appid's writer lock (module docstring),
        on one of the connections that appid may hold (APPID_WRITERS_SHARE)."""
        with self._appid_slot(appid), self._storage_errors("write"), self._pool.connection() as conn:
            if appid is not None:
                conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (APPID_LOCK, appid))
            yield conn
        self._failure = None

    @contextmanager
    def _appid_slot(self, appid: str | None) -> Iterator[None]:
        """One of the appid's writer slots in this process, waited for at most the pool's
        timeout; busy is -15, the appid's own (not a storage failure: health stays ok)."""
        if appid is None:
            yield
            return
        with self._writers_lock:
            slots = self._writers.setdefault(appid, threading.BoundedSemaphore(self._writers_per_appid))
        if not slots.acquire(timeout=self._wait_s):
            raise ApiError(errors.RATE_LIMITED, "too many writes of this appid at once: try again")
        try:
            yield
        finally:
            slots.release()

    @contextmanager
    def _read(self) -> Iterator:
        """One snapshot for several SELECTs."""
        with self._storage_errors("read"), self._pool.connection() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            yield conn

    def _busy_errors(self) -> tuple:
        import psycopg

        return (psycopg.errors.LockNotAvailable,)  # SESSION_LIMITS' lock_timeout

    def _driver_errors(self) -> tuple:
        import psycopg
        from psycopg_pool import PoolTimeout

        # DataError: a value of the request PostgreSQL refuses (NUL in text, a number out of range)
        return psycopg.IntegrityError, psycopg.DataError, (psycopg.Error, PoolTimeout)

    def close(self) -> None:
        self._pool.close()

    def rate_limiter(self, rate_per_s: float, burst: int) -> PostgresRateLimiter:
        return PostgresRateLimiter(self._pool, rate_per_s, burst)

    def _executemany(self, c, text: str, rows: list) -> None:
        with c.cursor() as cur:
            cur.executemany(self._sql(text), rows)


def _session_limits(conn) -> None:
    """SESSION_LIMITS on each new pooled connection where the site set none; left idle, as the
    pool wants it."""
    for name, value in SESSION_LIMITS.items():
        (source,) = conn.execute("SELECT source FROM pg_settings WHERE name = %s", (name,)).fetchone()
        if source == "default":  # not set by the site (a 0 it chose on purpose is kept too)
            conn.execute(f"SET {name} = '{value}'")
    conn.commit()


class PostgresRateLimiter:
    """The per-appid token bucket of `RateLimiter`, kept in the database so that every hub
    process draws from the same bucket. One statement per request: the row lock of
    INSERT ... ON CONFLICT DO UPDATE makes the take atomic, and the database's clock serves
    every process (their own clocks may disagree)."""

    blocking = True  # a network round trip: called off the event loop

    _TAKE = """
        INSERT INTO rate_buckets AS b (key, tokens, updated)
        VALUES (%(key)s, %(burst)s - 1, extract(epoch FROM clock_timestamp()))
        ON CONFLICT (key) DO UPDATE SET
            tokens = LEAST(%(burst)s, b.tokens + (EXCLUDED.updated - b.updated) * %(rate)s) - 1,
            updated = EXCLUDED.updated
        WHERE LEAST(%(burst)s, b.tokens + (EXCLUDED.updated - b.updated) * %(rate)s) >= 1
        RETURNING tokens
    """

    def __init__(self, pool, rate_per_s: float, burst: int):
        self._pool = pool
        self.rate = float(rate_per_s)
        self.burst = max(1, int(burst))

    def allow(self, key: str) -> bool:
        """Take one token for `key`; False when the bucket is empty. rate 0 = unlimited."""
        import psycopg
        from psycopg_pool import PoolTimeout

        if self.rate <= 0:
            return True
        try:
            with self._pool.connection() as conn:
                row = conn.execute(self._TAKE, {"key": key, "burst": float(self.burst), "rate": self.rate}).fetchone()
        except (psycopg.Error, PoolTimeout) as exc:
            raise ApiError(errors.FEATURE_STORAGE, f"rate limit unavailable: {type(exc).__name__}") from None
        return row is not None
