"""The `Authorization` signature of the face API (the vendor SDKs' HMAC-SHA1 one): sign, parse, check.

    plain = "a=<appid>&b=<bucket>&k=<SecretId>&e=<expiry>&t=<now>&r=<random>&f=<fileid>"
    Authorization = base64(HMAC-SHA1(SecretKey, plain) || plain)

The vendor's SDKs disagree on field order and on the optional fields (b, r, u, f), so the
checker splits the plaintext in any order, requires only a, k, e, t, and computes the HMAC over
the exact bytes received. The checks map to codes as the doc suggests (4, 5, 10, 11, 12, 14, 9,
13; 6 is the caller's job once the body's appid is known: `Signature.check_appid`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import heapq
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol

from edge.core import errors
from edge.core.errors import ApiError

DIGEST_LEN = 20  # HMAC-SHA1
# "at most three months ahead" for multi-use signatures: three calendar months are up to 92
# days, and a client's clock may run a few minutes ahead of the server's. At exactly 90 days a
# client signing with the longest validity it may (t + three months) was refused on every call.
MAX_VALIDITY_S = 92 * 24 * 3600 + 300
# The longest header we bother decoding: real ones are ~200 bytes; bounds work on junk input.
MAX_HEADER_LEN = 4096
REQUIRED = ("a", "k", "e", "t")
# How far from its `t` a single-use signature is accepted by the API (hub and edge)
SINGLE_USE_WINDOW_S = 3600


@dataclass(frozen=True)
class Credential:
    """One API key: the appid it belongs to, its public SecretId and its SecretKey; `edge_id`
    (the hub's) binds it to one edge: it then serves that edge's calls only (edge.api.ops.EDGE_OPS),
    for the persons of `groups` only when it names any. `calls` (the edge's [api] credentials),
    when it names any, are the only calls it may make: local API endpoints by name (`verify`,
    `claim`, ...) and MQTT commands as `cmd/<name>`."""

    appid: str
    secret_id: str
    secret_key: str
    edge_id: str = ""
    groups: tuple[str, ...] = ()
    calls: tuple[str, ...] = ()

    def may_call(self, call: str) -> bool:
        return not self.calls or call in self.calls


def sign(
    appid: str,
    secret_id: str,
    secret_key: str,
    *,
    expiry: int | None = None,
    now: int | None = None,
    rand: int | None = None,
    bucket: str = "",
    fileid: str = "",
) -> str:
    """A signature in the client order a,b,k,e,t,r,f.

    Multi-use by default (e = now + 1 h); pass `expiry=0` and a `fileid` for a single-use one.
    """
    now = int(time.time()) if now is None else int(now)
    expiry = now + 3600 if expiry is None else int(expiry)
    rand = secrets.randbelow(10**10) if rand is None else int(rand)
    plain = f"a={appid}&b={bucket}&k={secret_id}&e={expiry}&t={now}&r={rand}&f={fileid}"
    return sign_plain(secret_key, plain.encode())


def sign_plain(secret_key: str, plain: bytes) -> str:
    """base64(HMAC-SHA1(secret_key, plain) || plain) for an already formatted plaintext."""
    digest = hmac.new(secret_key.encode(), plain, hashlib.sha1).digest()
    return base64.b64encode(digest + plain).decode("ascii")


@dataclass(frozen=True)
class Signature:
    """A parsed (not yet checked) signature: the fields and the exact signed bytes."""

    digest: bytes
    plain: bytes
    fields: Mapping[str, str]

    @property
    def appid(self) -> str:
        return self.fields["a"]

    @property
    def secret_id(self) -> str:
        return self.fields["k"]

    @property
    def expiry(self) -> int:
        return int(self.fields["e"])

    @property
    def issued(self) -> int:
        return int(self.fields["t"])

    @property
    def single_use(self) -> bool:
        return self.expiry == 0

    @property
    def for_a_command(self) -> bool:
        """A single-use signature made for an MQTT command (`command_purpose`): good for that
        command only, never for an HTTP request."""
        return self.single_use and is_command_purpose(self.fields.get("f", ""))

    def check_appid(self, body_appid: str) -> None:
        """Code 6 when the body's appid is not the one that was signed."""
        if body_appid != self.appid:
            raise ApiError(errors.APPID_MISMATCH, "appid in the signature does not match the request's appid")


def command_purpose(name: str, subject: str | None = None, device: str = "") -> str:
    """The `f` a single-use signature of an MQTT command carries: `sync`, `verify:<person_id>`
    (the claim it opens) or `unlock:<door>`, each followed by `/<device id>` when bound to one
    device (neither ids nor device ids hold a `/`). The HTTP APIs refuse signatures bound so,
    whatever their endpoint."""
    if name == "sync":
        purpose = "sync"
    else:
        purpose = f"unlock:{subject}" if name == "unlock" else f"verify:{subject}"
    return f"{purpose}/{device}" if device else purpose


# The relay commands the edge sends an external controller (edge.door.backends.mqtt) are bound
# to `door-relay:...`: never good for the HTTP APIs either.
COMMAND_PREFIXES = ("verify:", "unlock:", "door-relay:")


def is_command_purpose(f: str) -> bool:
    return f == "sync" or f.startswith(("sync/", *COMMAND_PREFIXES))


def parse(header: str | bytes | None) -> Signature:
    """Split a header into digest, plaintext and fields; 4 if empty, 5 if malformed."""
    if header is None or not header.strip():
        raise ApiError(errors.SIGNATURE_EMPTY)
    if isinstance(header, str):
        try:
            header = header.encode("ascii")
        except UnicodeEncodeError:
            raise ApiError(errors.SIGNATURE_MALFORMED, "signature is not Base64") from None
    header = header.strip()
    if len(header) > MAX_HEADER_LEN:
        raise ApiError(errors.SIGNATURE_MALFORMED, "signature too long")
    try:
        raw = base64.b64decode(header, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(errors.SIGNATURE_MALFORMED, "signature is not Base64") from None
    if len(raw) <= DIGEST_LEN:
        raise ApiError(errors.SIGNATURE_MALFORMED, "signature shorter than 21 bytes")
    digest, plain = raw[:DIGEST_LEN], raw[DIGEST_LEN:]
    try:
        text = plain.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(errors.SIGNATURE_MALFORMED, "signature plaintext is not text") from None
    fields: dict[str, str] = {}
    for pair in text.split("&"):
        key, sep, value = pair.partition("=")
        if not sep or not key or key in fields:
            raise ApiError(errors.SIGNATURE_MALFORMED, "signature plaintext is not k=v&...")
        fields[key] = value
    missing = [k for k in REQUIRED if not fields.get(k)]
    if missing:
        raise ApiError(errors.SIGNATURE_MALFORMED, f"signature lacks {','.join(missing)}")
    for key in ("e", "t"):
        if not (fields[key].isascii() and fields[key].isdigit()) or len(fields[key]) > 12:
            raise ApiError(errors.SIGNATURE_MALFORMED, f"signature field {key} is not a unix time")
    return Signature(digest=digest, plain=plain, fields=fields)


class SignatureStore(Protocol):
    """Where a ReplayCache keeps its entries across restarts: the hub's store, the edge's
    edge.daemon.signature_log.SignatureLog."""

    def claim_signature(self, key: bytes, valid_until: float, now: float) -> bool:
        """True if `key` was not remembered (and now is until `valid_until`)."""
        ...


class ReplayCache:
    """Remembers each single-use signature until it could no longer be accepted anyway (its
    `t` plus `window_s`: a `t` set ahead keeps it longer), holding at most `capacity` of them.

    `window_s` is how far from its `t` this consumer accepts a single-use signature; `keep_s`
    (at least `window_s`) how long after its `t` it is remembered. A store shared by consumers
    with different windows (the edge's commands, 60 s, and its local API, 1 h) needs every
    consumer to keep its rows for the longest window of them all: a command's row dropped after
    60 s let the API accept the same signature at 62 s.

    With a `store` (the hub's), the entries live in it and survive a restart; without one (the
    edge's local API) they are in memory. When full of still-valid entries the memory cache
    refuses new ones (code 107, fail-secure) rather than forgetting one that could be replayed.
    """

    def __init__(self, window_s: int = SINGLE_USE_WINDOW_S, capacity: int = 100_000,
                 store: SignatureStore | None = None, keep_s: int | None = None):
        if keep_s is not None and keep_s < window_s:
            raise ValueError("a single-use signature must be kept at least as long as it is accepted")
        self.window_s = window_s
        self.keep_s = window_s if keep_s is None else keep_s
        self.capacity = capacity
        self.store = store
        self._seen: dict[bytes, float] = {}
        self._expiry: list[tuple[float, bytes]] = []  # heap of (valid_until, key)
        self._lock = threading.Lock()

    @property
    def held(self) -> int:
        """Signatures remembered in memory (none with a store). Not __len__: an empty cache
        would be falsy, and `replay or ReplayCache()` once dropped a configured one that way."""
        return len(self._seen)

    def claim(self, key: bytes, now: float, valid_until: float | None = None) -> None:
        """ApiError 13 if `key` was claimed before and is still remembered."""
        valid_until = now + self.window_s if valid_until is None else valid_until
        if self.store is not None:
            if not self.store.claim_signature(key, valid_until, now):
                raise ApiError(errors.REPLAY)
            return
        with self._lock:
            while self._expiry and self._expiry[0][0] <= now:
                _, old = heapq.heappop(self._expiry)
                if self._seen.get(old, now + 1) <= now:
                    del self._seen[old]
            if key in self._seen:
                raise ApiError(errors.REPLAY)
            if len(self._seen) >= self.capacity:
                raise ApiError(errors.AUTH_UNAVAILABLE, "too many single-use signatures in flight")
            self._seen[key] = valid_until
            heapq.heappush(self._expiry, (valid_until, key))


class Verifier:
    """Checks signatures against the configured credentials (thread-safe)."""

    def __init__(self, credentials: Iterable[Credential], replay: ReplayCache | None = None):
        self._by_secret_id: dict[str, Credential] = {}
        self._appids: set[str] = set()
        for cred in credentials:
            if not cred.secret_key.strip():
                continue  # anyone can compute an HMAC under an empty key: it authenticates no one
            self._by_secret_id[cred.secret_id] = cred
            self._appids.add(cred.appid)
        self.replay = replay if replay is not None else ReplayCache()

    def check(self, header: str | bytes | None, now: float | None = None) -> Signature:
        """The parsed signature if valid, else ApiError 4/5/10/11/12/14/9/13; a single-use one
        is used up (`verify` then `consume`)."""
        now = time.time() if now is None else now
        sig = self.verify(header, now)
        self.consume(sig, now)
        return sig

    def verify(self, header: str | bytes | None, now: float | None = None) -> Signature:
        """`check` without using up a single-use signature: a caller that checks more than the
        signature (what it is bound to, the rest of the request) calls `consume` once all of
        that passed, so a tampered copy it refuses does not burn the genuine request's
        signature. ApiError 4/5/10/11/12/14/9."""
        now = time.time() if now is None else now
        sig = parse(header)
        if sig.appid not in self._appids:
            raise ApiError(errors.APPID_UNKNOWN)
        cred = self._by_secret_id.get(sig.secret_id)
        if cred is None:
            raise ApiError(errors.SECRET_ID_UNKNOWN)
        if cred.appid != sig.appid:
            raise ApiError(errors.SECRET_ID_APPID_MISMATCH)
        expected = hmac.new(cred.secret_key.encode(), sig.plain, hashlib.sha1).digest()
        if not hmac.compare_digest(expected, sig.digest):
            raise ApiError(errors.SIGNATURE_INVALID)
        if sig.single_use:
            # e = 0: valid once, and only around its issue time so the cache stays bounded.
            if not sig.fields.get("f"):
                raise ApiError(errors.SIGNATURE_EXPIRED, "single-use signature without a resource (f)")
            if abs(now - sig.issued) > self.replay.window_s:
                raise ApiError(errors.SIGNATURE_EXPIRED, "single-use signature issued too long ago")
        else:
            if sig.expiry <= sig.issued or sig.expiry <= now:
                raise ApiError(errors.SIGNATURE_EXPIRED)
            # measured from the server's clock: a `t` set in the future must not stretch the window
            if sig.expiry - int(now) > MAX_VALIDITY_S:
                raise ApiError(errors.SIGNATURE_EXPIRED, "signature valid for more than three months")
        return sig

    def credential_of(self, sig: Signature) -> Credential:
        """The credential whose key `verify` accepted `sig` under."""
        return self._by_secret_id[sig.secret_id]

    def consume(self, sig: Signature, now: float | None = None) -> None:
        """Use up a single-use signature `verify` accepted (ApiError 13 if it was used before);
        nothing for a multi-use one."""
        if sig.single_use:
            now = time.time() if now is None else now
            # remembered until issued + keep_s (>= the window), whatever the time of first use
            self.replay.claim(sig.digest, now, valid_until=sig.issued + self.replay.keep_s)
