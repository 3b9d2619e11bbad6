"""Logins and sessions of the console, kept in the hub's store.

A session is an opaque random token (32 bytes from `secrets`) sent in a cookie; the store keeps
only its sha256, so reading the database opens no session. A session ends after `idle_s`
without a request, `absolute_s` after its login, at logout, when the account's password is
reset, and when the account is deleted. Its last use is written at most once a minute.

Login rate limit, counted in the store (so over every hub process): at most 5 failed logins per
username and 20 per client address (an IPv6 one by its /64, which one host holds whole) in any
15 minutes; beyond, a login is refused before the password is checked, until the oldest failure
leaves the window. Each attempt is counted before its password is checked, in one transaction
with the count, so logins sent at once get no more checks than the limit; a success takes its
attempt back and clears the username's failures. At most PASSWORD_CHECKS_AT_ONCE passwords are
checked at once in a process (scrypt: 32 MiB and a quarter of a second each), so logins from many
addresses cannot take every core and the face API's worker threads. The per-session CSRF token
is an HMAC of the session token: nothing more to store.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Callable

from edge.hub.store.console import Account, ConsoleSession
from edge.hub.ui.passwords import needs_rehash, rehash, verify_password


@dataclass(frozen=True)
class SessionPolicy:
    idle_s: float = 30 * 60
    absolute_s: float = 12 * 3600
    touch_every_s: float = 60.0
    account_failures: int = 5
    address_failures: int = 20
    failure_window_s: float = 15 * 60


PASSWORD_CHECKS_AT_ONCE = 2
CHECK_WAIT_S = 10.0  # a login waits this long for its turn to be checked, then is told to retry


def account_key(username: str, key: bytes) -> str:
    """The rate limit's key of a username as typed: its HMAC under `key` (a secret of the hub's,
    not in the store), never its text: the text is sometimes the password, typed in the wrong
    box, and the failures are stored (and backed up), where a plain hash gave a weak password
    back to a dictionary."""
    return "user:" + hmac.new(key, username.encode(), hashlib.sha256).hexdigest()


def address_key(address: str) -> str:
    """The rate limit's key of a client address: an IPv6 address by its /64 (a host is handed a
    whole /64: counted per address, it had billions of fresh ones), any other as it is."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"addr:{address[:64]}"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return f"addr:{ip.ipv4_mapped}"
        return f"addr:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"addr:{ip}"


class LoginRefused(Exception):
    """A refused login; `limited` when the rate limit refused it (the password was not checked);
    `known` when the username typed is an account's (the log names it then, and only then)."""

    def __init__(self, message: str, limited: bool = False, known: bool = False):
        super().__init__(message)
        self.limited, self.known = limited, known


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def csrf_token(token: str) -> str:
    return hmac.new(token.encode(), b"edge-verifier console csrf", hashlib.sha256).hexdigest()


class Sessions:
    def __init__(self, store, policy: SessionPolicy | None = None, clock: Callable[[], float] = time.time,
                 name_key: bytes | None = None):
        self.store = store
        self.name_key = name_key or secrets.token_bytes(32)  # account_key's; the hub's processes share one
        self.policy = policy or SessionPolicy()
        self.clock = clock
        self._checking = threading.BoundedSemaphore(PASSWORD_CHECKS_AT_ONCE)

    def login(self, username: str, password: str, address: str) -> tuple[str, Account]:
        """(new session token, account); LoginRefused otherwise (one message for a wrong
        username and a wrong password)."""
        now, p = self.clock(), self.policy
        user, addr = account_key(username, self.name_key), address_key(address)
        if not self.store.claim_login_attempt({user: p.account_failures, addr: p.address_failures}, now,
                                              now - p.failure_window_s):
            raise LoginRefused("too many failed logins: wait a few minutes", limited=True,
                               known=bool(username) and self.store.account(username) is not None)
        if not self._checking.acquire(timeout=CHECK_WAIT_S):
            raise LoginRefused("the console is busy checking other logins: try again in a moment", limited=True)
        try:
            account = self.store.account(username) if username else None
            passed = verify_password(password, account.password if account else None) and account is not None
            checked = account.password if account else ""  # the hash this password was found to match
            if passed and account is not None and needs_rehash(checked):
                # Hashes stored with older, weaker parameters are upgraded when their password is
                # next known: the only time it can be.
                upgraded = rehash(password)
                if self.store.rehash_password(account.username, checked, upgraded):
                    checked = upgraded
                else:  # changed meanwhile: another login's upgrade of this password, or a reset
                    now_stored = self.store.account(account.username)
                    current = now_stored.password if now_stored else ""
                    # two logins at once after the upgrade: the second was refused its right password
                    if current and verify_password(password, current):
                        checked = current
        finally:
            self._checking.release()
        if not passed or account is None:
            raise LoginRefused("wrong username or password", known=account is not None)
        self.store.login_succeeded(user, addr, now)
        token = secrets.token_urlsafe(32)
        # Only while the hash is still the one checked: a reset that ran during the check (to
        # lock out whoever knows the old password) left this login a session for 12 h.
        if not self.store.create_session(token_hash(token), account.username, now,
                                         expired_before=now - max(p.idle_s, p.absolute_s), password_hash=checked):
            raise LoginRefused("wrong username or password")
        return token, account

    def resolve(self, token: str | None) -> ConsoleSession | None:
        """The live session of `token`, None when there is none (ended, expired, unknown)."""
        if not token or len(token) > 100:
            return None
        hashed = token_hash(token)
        session = self.store.session(hashed)
        if session is None:
            return None
        now, p = self.clock(), self.policy
        if now - session.last_seen > p.idle_s or now - session.created > p.absolute_s:
            self.store.end_session(hashed)
            return None
        if now - session.last_seen >= p.touch_every_s:
            self.store.touch_session(hashed, now)
        return session

    def logout(self, token: str | None) -> None:
        if token:
            self.store.end_session(token_hash(token))
