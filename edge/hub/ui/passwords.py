"""Password hashes: scrypt (hashlib, OpenSSL's), memory-hard, with a random salt per password.

Parameters: N = 2**15, r = 8, p = 3, one of OWASP's equivalents of N = 2**17, r = 8, p = 1 (the
Password Storage Cheat Sheet's list): 128 * N * r = 32 MiB of memory, where 2**17 would take
128 MiB per login on a hub that may be a Raspberry Pi, and three times p = 1's work (0.25 s
on one core of the 2-vCPU AMD EPYC VM, idle): cheap for a login, costly for a guesser with many
candidates. They are stored with each hash ("scrypt$15$8$3$salt$hash", base64), so older
parameters still verify; a login with a hash of other parameters stores it again with these
(`needs_rehash`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

LOG2_N, R, P = 15, 8, 3
SALT_BYTES, KEY_BYTES = 16, 32
MIN_LENGTH = 12  # OWASP ASVS 2.1.1
MAX_LENGTH = 256  # a longer input would only cost hashing time


class PasswordError(ValueError):
    """A password that is not acceptable (the message says why, without the password)."""


def check_acceptable(password: str) -> None:  # raises PasswordError (a ValueError)
    if len(password) < MIN_LENGTH:
        raise PasswordError(f"a password has at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise PasswordError(f"a password has at most {MAX_LENGTH} characters")


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=1 << log2_n, r=r, p=p, dklen=KEY_BYTES,
                          maxmem=256 * (1 << log2_n) * r * p)


def hash_password(password: str) -> str:
    check_acceptable(password)
    return rehash(password)


def rehash(password: str) -> str:
    """Today's hash of a password already taken (no length rule of today applies to it)."""
    salt = os.urandom(SALT_BYTES)
    key = _scrypt(password, salt, LOG2_N, R, P)
    b64 = base64.b64encode
    return f"scrypt${LOG2_N}${R}${P}${b64(salt).decode()}${b64(key).decode()}"


def verify_password(password: str, encoded: str | None) -> bool:
    """True when `password` matches; with `encoded` None (no such account) the same work is
    done against a dummy hash, so the answer's timing does not tell which usernames exist."""
    if encoded is None:
        _scrypt(password[:MAX_LENGTH], b"\0" * SALT_BYTES, LOG2_N, R, P)
        return False
    try:
        kind, log2_n, r, p, salt, key = encoded.split("$")
        if kind != "scrypt":
            return False
        got = _scrypt(password[:MAX_LENGTH], base64.b64decode(salt), int(log2_n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(got, base64.b64decode(key))


def needs_rehash(encoded: str) -> bool:
    """True for a hash made with other parameters than today's (an older, weaker set)."""
    return not encoded.startswith(f"scrypt${LOG2_N}${R}${P}$")
