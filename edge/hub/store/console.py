"""What the web console (edge.hub.ui) keeps in the hub's store, written once for both stores:
accounts, sessions, login failures, and the read-only views its pages list (persons, face crops).

Sessions live here, not in a process's memory, so a logout (or a password reset, or a deleted
account: the sessions go with it, ON DELETE CASCADE) ends the session on every hub process.
Only the sha256 of a session token is stored. The tables are created by the PostgreSQL
migration 0004_console.sql and, on SQLite, by SQLITE_SCHEMA below (the same rows).
"""

from __future__ import annotations

from dataclasses import dataclass

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS console_accounts (
    username TEXT PRIMARY KEY, appid TEXT NOT NULL, role TEXT NOT NULL,
    password TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS console_sessions (
    token_hash TEXT PRIMARY KEY,
    username TEXT NOT NULL REFERENCES console_accounts (username) ON DELETE CASCADE,
    created REAL NOT NULL, last_seen REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS console_sessions_by_user ON console_sessions (username);
CREATE TABLE IF NOT EXISTS console_login_failures (key TEXT NOT NULL, time REAL NOT NULL);
CREATE INDEX IF NOT EXISTS console_login_failures_by_key ON console_login_failures (key, time);
"""


@dataclass(frozen=True)
class Account:
    username: str
    appid: str
    role: str
    password: str  # the encoded hash (edge.hub.ui.passwords), never the password
    created: float


@dataclass(frozen=True)
class ConsoleSession:
    token_hash: str
    account: Account
    created: float
    last_seen: float


@dataclass(frozen=True)
class PersonRow:
    person_id: str
    person_name: str
    group_ids: tuple[str, ...]
    faces: int


class ConsoleSql:
    """Part of SqlStore (edge.hub.store.sql): uses its `_q`, `_read()` and `_write()`."""

    # --- accounts ---------------------------------------------------------------------------
    def add_account(self, account: Account) -> bool:
        """False when the username is taken."""
        with self._write() as c:
            cur = self._q(c, "INSERT INTO console_accounts (username, appid, role, password, created)"
                             " VALUES (?, ?, ?, ?, ?) ON CONFLICT (username) DO NOTHING",
                          (account.username, account.appid, account.role, account.password, account.created))
            return cur.rowcount == 1

    def account(self, username: str) -> Account | None:
        with self._read() as c:
            row = self._q(c, "SELECT username, appid, role, password, created FROM console_accounts"
                             " WHERE username = ?", (username,)).fetchone()
        return None if row is None else Account(*row)

    def accounts(self, appid: str | None = None) -> list[Account]:
        sql = "SELECT username, appid, role, password, created FROM console_accounts"
        args: tuple = ()
        if appid is not None:
            sql, args = sql + " WHERE appid = ?", (appid,)
        with self._read() as c:
            return [Account(*row) for row in self._q(c, sql + " ORDER BY username", args)]

    def set_password(self, username: str, password_hash: str) -> bool:
        """Replace the hash and end every session of the account (one transaction)."""
        with self._write() as c:
            cur = self._q(c, "UPDATE console_accounts SET password = ? WHERE username = ?", (password_hash, username))
            self._q(c, "DELETE FROM console_sessions WHERE username = ?", (username,))
            return cur.rowcount == 1

    def rehash_password(self, username: str, old_hash: str, new_hash: str) -> bool:
        """Store `new_hash` (the same password, today's parameters) unless the hash changed since
        it was read: a reset meanwhile stays. Sessions are kept."""
        with self._write() as c:
            sql = "UPDATE console_accounts SET password = ? WHERE username = ? AND password = ?"
            return self._q(c, sql, (new_hash, username, old_hash)).rowcount == 1

    def delete_account(self, username: str) -> bool:
        with self._write() as c:
            self._q(c, "DELETE FROM console_sessions WHERE username = ?", (username,))
            return self._q(c, "DELETE FROM console_accounts WHERE username = ?", (username,)).rowcount == 1

    def set_role_of(self, appid: str, username: str, role: str) -> str:
        """Give `username` of `appid` the role `role` unless that takes the appid's last admin
        away, in one transaction holding the appid's writer lock (as delete_account_of):
        "changed", "missing" (none, or another appid's) or "last_admin". Its sessions end: they
        carried the old role's page."""
        with self._write(appid) as c:
            row = self._q(c, "SELECT role FROM console_accounts WHERE username = ? AND appid = ?",
                          (username, appid)).fetchone()
            if row is None:
                return "missing"
            if row[0] == "admin" and role != "admin":
                (admins,) = self._q(c, "SELECT COUNT(*) FROM console_accounts WHERE appid = ? AND role = 'admin'",
                                    (appid,)).fetchone()
                if admins <= 1:
                    return "last_admin"
            self._q(c, "UPDATE console_accounts SET role = ? WHERE username = ?", (role, username))
            self._q(c, "DELETE FROM console_sessions WHERE username = ?", (username,))
            return "changed"

    def delete_account_of(self, appid: str, username: str) -> str:
        """Delete `username` of `appid` unless it is the appid's last admin, in one transaction
        that holds the appid's writer lock: "deleted", "missing" (none, or another appid's) or
        "last_admin". Two admins deleting each other at once left the appid with none."""
        with self._write(appid) as c:
            row = self._q(c, "SELECT role FROM console_accounts WHERE username = ? AND appid = ?",
                          (username, appid)).fetchone()
            if row is None:
                return "missing"
            if row[0] == "admin":
                (admins,) = self._q(c, "SELECT COUNT(*) FROM console_accounts WHERE appid = ? AND role = 'admin'",
                                    (appid,)).fetchone()
                if admins <= 1:
                    return "last_admin"
            self._q(c, "DELETE FROM console_sessions WHERE username = ?", (username,))
            self._q(c, "DELETE FROM console_accounts WHERE username = ?", (username,))
            return "deleted"

    # --- sessions ---------------------------------------------------------------------------
    def create_session(self, token_hash: str, username: str, now: float, *, expired_before: float,
                       password_hash: str) -> bool:
        """Store a new session, only while the account's hash is still `password_hash` (the one
        its login checked): a reset between the check and now ended every session and must end
        this one too. Sessions last seen before `expired_before` go at the same time."""
        with self._write() as c:
            self._q(c, "DELETE FROM console_sessions WHERE last_seen < ?", (expired_before,))
            return self._q(c, "INSERT INTO console_sessions (token_hash, username, created, last_seen)"
                              " SELECT ?, ?, ?, ? FROM console_accounts WHERE username = ? AND password = ?",
                           (token_hash, username, now, now, username, password_hash)).rowcount == 1

    def session(self, token_hash: str) -> ConsoleSession | None:
        with self._read() as c:
            row = self._q(c, "SELECT s.token_hash, s.created, s.last_seen, a.username, a.appid, a.role, a.password,"
                             " a.created FROM console_sessions s JOIN console_accounts a ON a.username = s.username"
                             " WHERE s.token_hash = ?", (token_hash,)).fetchone()
        if row is None:
            return None
        return ConsoleSession(row[0], Account(*row[3:]), row[1], row[2])

    def touch_session(self, token_hash: str, now: float) -> None:
        with self._write() as c:
            self._q(c, "UPDATE console_sessions SET last_seen = ? WHERE token_hash = ?", (now, token_hash))

    def end_session(self, token_hash: str) -> None:
        with self._write() as c:
            self._q(c, "DELETE FROM console_sessions WHERE token_hash = ?", (token_hash,))

    # --- login failures (the login rate limit) -----------------------------------------------
    def claim_login_attempt(self, limits: dict[str, int], now: float, since: float) -> bool:
        """Count an attempt of each key (`limits`: key -> its most failures since `since`) as a
        failure before its password is checked, in one transaction with the count: False,
        nothing written, when any key is at its limit. Checked first and counted after, N logins
        sent at once were all checked (12 of 12 with a limit of 5). A success takes its attempt
        back (`login_succeeded`)."""
        # the writer lock of a name no appid can have (ids hold no newline): PostgreSQL's hub
        # processes count one login at a time; SQLite has one writer anyway
        with self._write("\nconsole-login") as c:
            self._q(c, "DELETE FROM console_login_failures WHERE time < ?", (since,))
            for key, limit in limits.items():
                (n,) = self._q(c, "SELECT COUNT(*) FROM console_login_failures WHERE key = ? AND time >= ?",
                               (key, since)).fetchone()
                if int(n) >= limit:
                    return False
            for key in limits:
                self._q(c, "INSERT INTO console_login_failures (key, time) VALUES (?, ?)", (key, now))
        return True

    def forget_plain_login_names(self) -> int:
        """Delete the login failures an older release counted under the name as typed (sometimes
        a password, in the wrong box); how many went. Names are counted under an HMAC now
        (edge.hub.ui.sessions.account_key: `user:` and 64 hex digits)."""
        with self._write("\nconsole-login") as c:
            return int(self._q(c, "DELETE FROM console_login_failures WHERE key LIKE ? AND length(key) <> ?",
                               ("user:%", len("user:") + 64)).rowcount)

    def login_succeeded(self, account_key: str, address_key: str, at: float) -> None:
        """A login that passed: the account's failures cleared, its address's attempt taken back."""
        with self._write() as c:
            self._q(c, "DELETE FROM console_login_failures WHERE key = ?", (account_key,))
            self._q(c, "DELETE FROM console_login_failures WHERE key = ? AND time = ?", (address_key, at))

    # --- read-only views of the appid's persons -----------------------------------------------
    def persons_page(self, appid: str, query: str, offset: int, limit: int) -> tuple[int, list[PersonRow]]:
        """(matching persons, one page of them by person_id): `query` matches a part of the id
        or the name, case-insensitively (LIKE's wildcards in it are taken literally)."""
        pattern = "%" + query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where = ("FROM persons p WHERE p.appid = ? AND (LOWER(p.person_id) LIKE ? ESCAPE '\\'"
                 " OR LOWER(p.person_name) LIKE ? ESCAPE '\\')")
        args = (appid, pattern, pattern)
        with self._read() as c:
            (total,) = self._q(c, "SELECT COUNT(*) " + where, args).fetchone()
            rows = self._q(c, "SELECT p.person_id, p.person_name, (SELECT COUNT(*) FROM faces f WHERE f.appid = p.appid"
                              " AND f.person_id = p.person_id) " + where + " ORDER BY p.person_id LIMIT ? OFFSET ?",
                           (*args, limit, offset)).fetchall()
            groups: dict[str, list[str]] = {}
            for pid, _, _ in rows:
                groups[pid] = [g for (g,) in self._q(c, "SELECT group_id FROM person_groups WHERE appid = ?"
                                                        " AND person_id = ? ORDER BY group_id", (appid, pid))]
        return int(total), [PersonRow(pid, name, tuple(groups[pid]), int(n)) for pid, name, n in rows]

    def group_sizes(self, appid: str) -> list[tuple[str, int]]:
        with self._read() as c:
            return [(g, int(n)) for g, n in self._q(
                c, "SELECT g.group_id, COUNT(pg.person_id) FROM groups g LEFT JOIN person_groups pg"
                   " ON pg.appid = g.appid AND pg.group_id = g.group_id WHERE g.appid = ?"
                   " GROUP BY g.group_id ORDER BY g.group_id", (appid,))]

    def face_crop(self, appid: str, face_id: str) -> bytes | None:
        """The sealed crop of one of the appid's faces; None when the face is not the appid's or
        has no crop (so another tenant's face is indistinguishable from a missing one)."""
        with self._read() as c:
            row = self._q(c, "SELECT k.crop FROM face_crops k JOIN faces f ON f.face_id = k.face_id"
                             " WHERE k.face_id = ? AND f.appid = ?", (face_id, appid)).fetchone()
        return None if row is None else bytes(row[0])
