"""Console accounts, one code path for the CLI (`edge-verifier hub user ...`) and the admin page."""

from __future__ import annotations

import re
import time

from edge.hub.store.console import Account
from edge.hub.ui.passwords import hash_password
from edge.hub.ui.roles import ROLES

USERNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")


class AccountError(ValueError):  # PasswordError is a ValueError too
    """Refused (the message says why, never with a password)."""


def check_username(username: str) -> str:
    if not USERNAME.fullmatch(username or ""):
        raise AccountError("a username is 1 to 64 letters, digits and . _ @ - (starting with a letter or digit)")
    return username


def add(store, username: str, appid: str, role: str, password: str) -> Account:
    """Create an account acting as `appid`; AccountError when the name, role or password is
    not acceptable or the name is taken."""
    check_username(username)
    if role not in ROLES:
        raise AccountError(f"role must be one of {', '.join(ROLES)}")
    if not appid:
        raise AccountError("an account belongs to an appid")
    # Usernames are one namespace over every appid: "taken" alone, never whose (an admin learnt
    # that a name existed in another tenant), and never one that differs only in case ("ADA"
    # beside "ada" passes for her in the records that name who lifted a lockout).
    if any(a.username.casefold() == username.casefold() for a in store.accounts()):
        raise AccountError("that username is not available")
    account = Account(username, appid, role, hash_password(password), time.time())
    if not store.add_account(account):
        raise AccountError("that username is not available")
    return account


def reset_password(store, username: str, password: str) -> None:
    """A new password; every session of the account ends."""
    if store.account(username) is None:
        raise AccountError(f"no account {username!r}")
    store.set_password(username, hash_password(password))
