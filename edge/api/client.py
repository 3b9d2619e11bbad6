"""Client of the face API (hub or vendor): signs, retries, breaks the circuit, types errors.

Used by the tests and by the edge daemon's cloud fallback and sync. Every request carries a
fresh multi-use signature (e = now + 1 h, random r). Bodies are JSON unless images are sent,
then multipart with indexed parts (`images[0]`, `group_ids[0]`, ...), like the vendor SDKs.

Retries (bounded, exponential backoff) happen only for `CloudUnavailable`: an API answer with
a code is final. Note a retried mutation whose first attempt did reach the hub may answer
e.g. -1302 (person exists) on the retry. After `breaker_failures` consecutive unavailable
results the circuit opens: calls fail fast with CloudUnavailable until `breaker_reset_s` has
passed, then one probe goes through (half open); its success closes the circuit.

Every attempt has a deadline over its whole exchange (connect, request, the answer's headers and
body): httpx's timeout bounds each read alone, and a hub (or a man in the middle) sending a
byte a second held the caller for as long as it liked, headers included. The connections' reads
and writes are given what is left of it (`_DeadlineBackend`).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from typing import Any

import httpcore
import httpx

from edge.core import errors, syncwire
from edge.core.signature import sign

# Codes that mean the service itself is in trouble, not the request: retried, counted by the
# circuit breaker and reported as unavailability, like an HTTP 5xx.
SERVER_TROUBLE_CODES = frozenset({errors.AUTH_UNAVAILABLE, 108, errors.INTERNAL_ERROR})
# The largest answer read (a sync page of 1,000 changes, a 1 MiB pack chunk in base64, are far
# below): a hub or a man in the middle sending more is cut off, not kept in memory.
MAX_ANSWER_BYTES = 32 << 20
# Tighter for what an edge asks: its JSON, once parsed, takes up to 25 times its size in memory (a
# 31 KiB gzip answer of 31 MiB of `[],` grew the daemon by 846 MB, past the unit's MemoryMax: a
# crash at every sync). A sync page of 1,000 changes of 512 values is about 4 MB.
MAX_ANSWER_BYTES_OF = {"sync": 8 << 20, "verify": 1 << 20, "uploadlog": 1 << 20, "packs": 4 << 20,
                       "packfile": 2 << 20}
# A sync page's whole answer within this (a few MB: 50 kB/s still gets one through); a hub sending
# a byte at a time held the sync thread, its status "ok" meanwhile, for as long as it liked.
SYNC_DEADLINE_S = 120.0
# An access log batch (its sealed face crops up to a few MB) the same.
UPLOAD_DEADLINE_S = 120.0
# Any other call's attempt: this many times the timeout, whole.
DEADLINE_TIMEOUTS = 4


_deadline = threading.local()  # .at: the monotonic deadline of this thread's attempt (None: none)


def _left(timeout: float | None) -> float | None:
    """A read's or a write's timeout, cut to what is left of the thread's deadline."""
    at = getattr(_deadline, "at", None)
    if at is None:
        return timeout
    left = max(at - time.monotonic(), 0.001)  # spent: the next read times out at once
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _left(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _left(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                  timeout: float | None = None) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _left(timeout)))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.SyncBackend):
    def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> httpcore.NetworkStream:
        return _DeadlineStream(super().connect_tcp(host, port, _left(timeout), local_address, socket_options))


class CloudError(Exception):
    """Base of the client's errors."""


class CloudUnavailable(CloudError):
    """No usable answer: connect error, timeout, HTTP 5xx, non-JSON body, or circuit open."""


class CloudRateLimited(CloudUnavailable):
    """Code 15: the hub is up but will not answer us now. Not retried at once (that is what it
    refuses), not counted by the breaker; for a decision it is unavailability like any other."""


class CloudApiError(CloudError):
    """The API answered with code != 0."""

    def __init__(self, code: int, message: str, data: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data or {}


class FingerprintMismatch(CloudApiError):
    """The hub stores no embeddings of the fingerprint asked for (its data lists those it does)."""


class CloudClient:
    def __init__(self, url: str, appid: str, secret_id: str, secret_key: str, *,
                 timeout: float = 3.0, retries: int = 2,
                 breaker_failures: int = 5, breaker_reset_s: float = 30.0, ca_file: str = "",
                 keepalive: bool = True):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.appid = appid
        self.secret_id = secret_id
        self.secret_key = secret_key
        self.retries = max(0, retries)
        self.breaker_failures = max(1, breaker_failures)
        self.breaker_reset_s = breaker_reset_s
        # https is always verified: against `ca_file` (a private CA) when given, else the system CAs
        verify = ssl.create_default_context(cafile=ca_file) if ca_file else True
        # keepalive=False: a connection per request, so a hub's worker processes share the load
        # (bench hub --processes); a kept connection stays with the process that accepted it.
        limits = httpx.Limits() if keepalive else httpx.Limits(max_keepalive_connections=0)
        transport = httpx.HTTPTransport(verify=verify, limits=limits, trust_env=False)
        # httpx takes no network backend of its own: its pool's, set before any connection, so
        # that every read and write keeps to the attempt's deadline (the module's docstring)
        transport._pool._network_backend = _DeadlineBackend()
        self._http = httpx.Client(timeout=httpx.Timeout(timeout), trust_env=False, transport=transport)
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probe_in_flight = False

    @classmethod
    def from_settings(cls, hub) -> CloudClient:
        """From the daemon's [hub] section."""
        return cls(hub.url, hub.appid, hub.secret_id, hub.secret_key, timeout=hub.timeout,
                   retries=hub.retries, breaker_failures=hub.breaker_failures,
                   breaker_reset_s=hub.breaker_reset_s, ca_file=hub.ca_file)

    # --- circuit breaker ---------------------------------------------------------------------
    @property
    def breaker_state(self) -> str:
        with self._lock:
            if self._opened_at is None:
                return "closed"
            if time.monotonic() - self._opened_at >= self.breaker_reset_s:
                return "half_open"
            return "open"

    def _admit(self) -> None:
        with self._lock:
            if self._opened_at is None:
                return
            if time.monotonic() - self._opened_at < self.breaker_reset_s or self._probe_in_flight:
                raise CloudUnavailable("circuit open: the cloud failed repeatedly")
            self._probe_in_flight = True

    def _record(self, ok: bool) -> None:
        with self._lock:
            self._probe_in_flight = False
            if ok:
                self._failures = 0
                self._opened_at = None
                return
            self._failures += 1
            if self._opened_at is not None or self._failures >= self.breaker_failures:
                self._opened_at = time.monotonic()

    # --- transport -------------------------------------------------------------------------
    def _post(self, op: str, fields: dict, files: dict[str, bytes] | None, deadline: float | None) -> dict:
        headers = {"Authorization": sign(self.appid, self.secret_id, self.secret_key)}
        url = f"{self.url}/face/{op}"
        body = {"appid": self.appid, **fields}
        try:
            if files:
                data: list[tuple[str, str]] = []
                for key, value in body.items():
                    if isinstance(value, (list, tuple)):
                        data += [(f"{key}[{i}]", str(v)) for i, v in enumerate(value)]
                    elif value is not None:
                        data.append((key, str(value)))
                parts = [(name, (name.replace("[", "_").replace("]", "") + ".jpg", blob, "application/octet-stream"))
                         for name, blob in files.items()]
                parts += [(k, (None, v)) for k, v in data]
                request = self._http.build_request("POST", url, files=parts, headers=headers)
            else:
                request = self._http.build_request("POST", url, json=body, headers=headers)
            _deadline.at = deadline
            try:
                resp = self._http.send(request, stream=True)
                try:
                    answer = _read_answer(resp, op, deadline)
                finally:
                    resp.close()
            finally:
                _deadline.at = None
        except httpx.TimeoutException as exc:
            spent = deadline is not None and time.monotonic() >= deadline - 0.01
            raise CloudUnavailable(f"/face/{op}: timeout ({type(exc).__name__})"
                                   + (": no whole answer within its deadline" if spent else "")) from None
        except httpx.HTTPError as exc:
            raise CloudUnavailable(f"/face/{op}: {type(exc).__name__}: {exc}") from None
        try:
            payload = json.loads(answer)
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, dict) or "code" not in payload:
            raise CloudUnavailable(f"/face/{op}: HTTP {resp.status_code} without a JSON envelope")
        if resp.status_code >= 500 or payload.get("code") in SERVER_TROUBLE_CODES:
            raise CloudUnavailable(
                f"/face/{op}: HTTP {resp.status_code}, code {payload.get('code')}: {payload.get('message')}"
            )
        return payload

    def call(self, op: str, fields: dict, files: dict[str, bytes] | None = None,
             deadline_s: float | None = None) -> dict:
        """POST /face/<op>; the envelope's `data` on code 0, else CloudApiError / CloudUnavailable.
        `deadline_s` (default DEADLINE_TIMEOUTS times the timeout): each attempt's whole
        exchange within it (the timeout alone bounds each read, so a hub answering a byte at a
        time held the caller for as long as it liked)."""
        delay = 0.2
        if deadline_s is None:
            deadline_s = DEADLINE_TIMEOUTS * self.timeout
        for attempt in range(self.retries + 1):
            self._admit()
            try:
                deadline = time.monotonic() + deadline_s
                payload = self._post(op, fields, files, deadline)
            except CloudUnavailable:
                self._record(False)
                if attempt >= self.retries or self.breaker_state != "closed":
                    raise
                time.sleep(delay)
                delay *= 2
                continue
            self._record(True)
            code = payload.get("code")
            if code == errors.RATE_LIMITED:
                raise CloudRateLimited(f"/face/{op}: code 15: {payload.get('message')}")
            data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
            if code != 0:
                raise CloudApiError(int(code) if isinstance(code, int) else -1, str(payload.get("message", "")), data)
            return data
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "CloudClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- one method per endpoint -----------------------------------------------------------
    @staticmethod
    def _image(fields: dict, image: bytes | None, url: str | None, name: str = "image", url_name: str = "url"):
        if url is not None:
            fields[url_name] = url
            return {}
        return {name: image} if image is not None else {}

    def newperson(self, person_id: str, group_ids: list[str], image: bytes | None = None, person_name: str = "",
                  tag: str = "", url: str | None = None) -> dict:
        fields: dict = {"person_id": person_id, "group_ids": list(group_ids), "person_name": person_name, "tag": tag}
        return self.call("newperson", fields, self._image(fields, image, url))

    def delperson(self, person_id: str) -> dict:
        return self.call("delperson", {"person_id": person_id})

    def addface(self, person_id: str, images: list[bytes] | None = None, tag: str = "",
                urls: list[str] | None = None) -> dict:
        fields: dict = {"person_id": person_id, "tag": tag}
        if urls is not None:
            fields["urls"] = list(urls)
            return self.call("addface", fields)
        return self.call("addface", fields, {f"images[{i}]": img for i, img in enumerate(images or [])})

    def delface(self, person_id: str, face_ids: list[str]) -> dict:
        return self.call("delface", {"person_id": person_id, "face_ids": list(face_ids)})

    def setinfo(self, person_id: str, person_name: str | None = None, tag: str | None = None) -> dict:
        fields: dict = {"person_id": person_id}
        if person_name is not None:
            fields["person_name"] = person_name
        if tag is not None:
            fields["tag"] = tag
        return self.call("setinfo", fields)

    def setcredentials(self, person_id: str, credentials: list[dict]) -> dict:
        """Replace the person's credentials ([{format, facility, number}]; [] removes them)."""
        return self.call("setcredentials", {"person_id": person_id, "credentials": credentials})

    def getcredentials(self, person_id: str) -> dict:
        return self.call("getcredentials", {"person_id": person_id})

    def setrules(self, rules: str, version: int | None = None) -> dict:
        """Replace the appid's access rules (the document as JSON text, docs/access.md); with
        `version`, only if that is still the stored one (else code -1508)."""
        fields: dict = {"rules": rules}
        if version is not None:
            fields["version"] = int(version)
        return self.call("setrules", fields)

    def getrules(self) -> dict:
        return self.call("getrules", {})

    def uploadlog(self, edge_id: str, records: str, crops: str | None = None) -> dict:
        """Send a batch of this edge's access log (JSON text of a list of records) and, when
        given, their sealed face crops (JSON text of a list of {seq, sealed: base64})."""
        params = {"edge_id": edge_id, "records": records}
        if crops is not None:
            params["crops"] = crops
        return self.call("uploadlog", params, deadline_s=max(UPLOAD_DEADLINE_S, DEADLINE_TIMEOUTS * self.timeout))

    def liftclaims(self, person_id: str) -> dict:
        """Lift the lockout of the person's claims at every door (docs/daemon.md)."""
        return self.call("liftclaims", {"person_id": person_id})

    def searchlog(self, **query: Any) -> dict:
        """Search the hub's access log: person_id, door, edge_id, decision, outcome, reason,
        kind, since, until (epoch seconds), limit, after (the `next` of the page before)."""
        return self.call("searchlog", {k: v for k, v in query.items() if v is not None})

    def getinfo(self, person_id: str) -> dict:
        return self.call("getinfo", {"person_id": person_id})

    def getgroupids(self) -> dict:
        return self.call("getgroupids", {})

    def getpersonids(self, group_id: str) -> dict:
        return self.call("getpersonids", {"group_id": group_id})

    def getfaceids(self, person_id: str) -> dict:
        return self.call("getfaceids", {"person_id": person_id})

    def getfaceinfo(self, face_id: str) -> dict:
        return self.call("getfaceinfo", {"face_id": face_id})

    def addgroupids(self, person_id: str, group_ids: list[str]) -> dict:
        return self.call("addgroupids", {"person_id": person_id, "group_ids": list(group_ids)})

    def delgroupids(self, person_id: str, group_ids: list[str]) -> dict:
        return self.call("delgroupids", {"person_id": person_id, "group_ids": list(group_ids)})

    def verify(self, person_id: str, image: bytes | None = None, url: str | None = None) -> dict:
        """The cloud fallback, on a door's decision path: each attempt's answer whole within
        twice the timeout."""
        fields: dict = {"person_id": person_id}
        return self.call("verify", fields, self._image(fields, image, url), deadline_s=2 * self.timeout)

    def identify(self, image: bytes | None = None, group_ids: list[str] | None = None, url: str | None = None) -> dict:
        fields: dict = {"group_ids": list(group_ids or [])}
        return self.call("identify", fields, self._image(fields, image, url))

    def compare(self, image_a: bytes | None = None, image_b: bytes | None = None, *,
                url_a: str | None = None, url_b: str | None = None) -> dict:
        fields: dict = {}
        files = {**self._image(fields, image_a, url_a, "imageA", "urlA"),
                 **self._image(fields, image_b, url_b, "imageB", "urlB")}
        return self.call("compare", fields, files)

    def detect(self, image: bytes | None = None, mode: int = 0, url: str | None = None) -> dict:
        fields: dict = {"mode": mode}
        return self.call("detect", fields, self._image(fields, image, url))

    def packs(self) -> dict:
        """The packs' listing (small): within one timeout, whole (a start's check of the hub
        waits START_CHECK_S at most)."""
        return self.call("packs", {}, deadline_s=self.timeout)

    def packfile(self, pack: str, name: str, offset: int = 0) -> dict:
        return self.call("packfile", {"pack": pack, "name": name, "offset": int(offset)})

    def sync(self, since: int, fingerprint: str, group_ids: list[str] | None = None, limit: int = 500,
             rules: bool = False, report: dict[str, str] | None = None,
             refusals_since: float | None = None, vanished_after: str = "") -> dict:
        """`report`: edge_id and the edge_* fields (edge.core.syncwire) the hub keeps for its console;
        with it, `refusals_since` asks for the claims other doors refused since that Unix time.
        `vanished_after`: on a pack the hub no longer serves, the persons changed are listed after
        this person_id (the last of a full list before)."""
        fields: dict = {"since": int(since), "fingerprint": fingerprint, "limit": int(limit)}
        if vanished_after:
            fields[syncwire.VANISHED_AFTER] = vanished_after
        if rules:  # this edge reads `rules` changes (edge.core.syncwire)
            fields["rules"] = 1
        if refusals_since is not None:
            fields[syncwire.REFUSALS_SINCE] = max(int(refusals_since), 1)
        if report:
            fields.update(report)
        if group_ids:
            fields["group_ids"] = list(group_ids)
        try:  # a page of 1,000 changes in at most SYNC_DEADLINE_S, however slowly it comes
            return self.call("sync", fields, deadline_s=SYNC_DEADLINE_S)
        except CloudApiError as exc:
            if exc.code == errors.INVALID_PARAMETER and "fingerprints" in exc.data:
                raise FingerprintMismatch(exc.code, exc.message, exc.data) from None
            raise


def _read_answer(resp: httpx.Response, op: str, deadline: float) -> bytes:
    """The answer's body, at most MAX_ANSWER_BYTES (MAX_ANSWER_BYTES_OF the op), whole before
    `deadline` (monotonic) if given; CloudUnavailable otherwise."""
    chunks, size, cap = [], 0, MAX_ANSWER_BYTES_OF.get(op, MAX_ANSWER_BYTES)
    for chunk in resp.iter_bytes():
        size += len(chunk)
        if size > cap:
            raise CloudUnavailable(f"/face/{op}: answer larger than {cap} bytes")
        if time.monotonic() > deadline:
            raise CloudUnavailable(f"/face/{op}: no whole answer within its deadline")
        chunks.append(chunk)
    return b"".join(chunks)
