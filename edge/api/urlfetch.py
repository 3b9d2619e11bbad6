"""Safe download of caller-chosen image urls (a server-side request: treat it as hostile).

http(s) only; the host is resolved once, every address checked, and the connection made to
the checked address (Host header and TLS SNI keep the name), so DNS rebinding cannot swap in an
internal address. Loopback, private, link-local (incl. 169.254.169.254), multicast, reserved and
unique-local (incl. fd00:ec2::254) addresses are refused unless the operator allow-list names the
host or a CIDR containing the address. An allow-list entry opens only ports 80 and 443 unless
it names its port (`images.internal:8080`, `10.1.2.0/24:8080`): an image server on a private
network must not make its neighbours' other services (a database, an admin page) reachable.
Redirects are followed by hand, at most `max_redirects`, each re-checked. The body is capped while streaming.

One deadline covers the whole fetch (resolve, connect, headers, body, every redirect): a server
that sends its headers a byte at a time cannot stretch it, as it could stretch per-read timeouts.
The fetch is asynchronous, so a slow url holds no worker thread.

Codes: -1308 for a url that may not be fetched (bad scheme or form, refused address, unknown
host, too many redirects); -1403 for a download that failed (connect error, timeout, HTTP
status other than 200, body over the cap, empty body).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from urllib.parse import urljoin, urlsplit

import httpx
from pydantic import ConfigDict, Field, PrivateAttr

from edge.core import errors
from edge.core.errors import MAX_BODY_BYTES, ApiError
from edge.core.settings import Section

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchSettings(Section):
    """What the operator sets about url downloads (the hub's [url_fetch])."""

    model_config = ConfigDict(frozen=True)

    connect_timeout_s: float = Field(3.0, gt=0, description="Connect timeout of a url image download.")
    total_timeout_s: float = Field(10.0, gt=0, description="Whole download time limit (code -1403 beyond).")
    max_redirects: int = Field(3, ge=0, le=10, description="Redirects followed, each address re-checked.")
    allow: tuple[str, ...] = Field(
        (),
        description="Hosts or CIDRs that may be fetched although private/loopback/link-local\n"
        "(e.g. [\"images.internal\", \"images.internal:8080\", \"10.0.0.0/8\", \"10.1.2.0/24:8080\",\n"
        "\"[fd00::1]:8080\"]); an entry without a port opens ports 80 and 443 only. Empty: public\n"
        "addresses only.",
    )
    per_appid: int = Field(8, ge=1, description="url downloads of one appid at once; more wait (at most\n"
                           "total_timeout_s, then -1403).")
    max_in_flight: int = Field(32, ge=1, description="url downloads at once over all appids (/health says\n"
                               "degraded when all are busy).")


class FetchPolicy(FetchSettings):
    """The operator's settings and the body cap of the API layer, which a fetched image obeys too."""

    max_bytes: int = Field(MAX_BODY_BYTES, ge=1)
    _nets: tuple = PrivateAttr(())  # (network, port or None)
    _hosts: tuple = PrivateAttr(())  # (host name, port or None)

    def model_post_init(self, context) -> None:
        nets, hosts = [], []
        for entry in self.allow:
            name, port = _split_port(entry.strip().lower())
            try:
                nets.append((ipaddress.ip_network(name, strict=False), port))
            except ValueError:
                hosts.append((name.rstrip("."), port))
        self._nets, self._hosts = tuple(nets), tuple(hosts)

    def host_allowed(self, host: str, port: int) -> bool:
        """True if an entry names `host` with this port, or without a port and port is 80/443."""
        host = host.lower().rstrip(".")
        return any(name == host and _port_open(entry_port, port) for name, entry_port in self._hosts)

    def address_allowed(self, addr: Address, port: int) -> bool:
        """True if a CIDR entry holds `addr` with this port, or without a port and port is 80/443."""
        return any(addr.version == net.version and addr in net and _port_open(entry_port, port)
                   for net, entry_port in self._nets)


def _split_port(entry: str) -> tuple[str, int | None]:
    """"images.internal:8080", "10.1.2.0/24:8080", "[fd00::1]:8080" → (name, 8080); a bare IPv6
    address or network ("fd00::/8", "::1") has no port."""
    try:
        ipaddress.ip_network(entry, strict=False)
        return entry, None
    except ValueError:
        pass
    name, sep, port = entry.rpartition(":")
    if sep and port.isascii() and port.isdigit():
        return name.strip("[]"), int(port)
    return entry.strip("[]"), None


def _port_open(entry_port: int | None, port: int) -> bool:
    # an entry without a port is for a web server: other services on the host stay closed
    return port == entry_port if entry_port is not None else port in (80, 443)


def is_public(addr: Address) -> bool:
    """True for an ordinary internet address (not loopback/private/link-local/metadata/...)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not (
        addr.is_multicast or addr.is_reserved or addr.is_loopback or addr.is_link_local
        or addr.is_private or addr.is_unspecified
    )


async def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as exc:
        raise ApiError(errors.URL_DOWNLOAD_FAILED, f"cannot resolve {host!r}: {exc}") from None
    out: list[Address] = []
    for info in infos:
        addr = ipaddress.ip_address(info[4][0].split("%")[0])
        if addr not in out:
            out.append(addr)
    if not out:
        raise ApiError(errors.URL_DOWNLOAD_FAILED, f"cannot resolve {host!r}")
    return out


async def _checked_target(url: str, policy: FetchPolicy) -> tuple[str, str, str | None]:
    """(url to connect to with the checked IP, Host header value, SNI name or None)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ApiError(errors.URL_DOWNLOAD_FAILED, "malformed url") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ApiError(errors.URL_DOWNLOAD_FAILED, "only http and https urls are fetched")
    host = parts.hostname
    if not host or parts.username is not None or parts.password is not None:
        raise ApiError(errors.URL_DOWNLOAD_FAILED, "url without a host, or with credentials")
    port = port or (443 if scheme == "https" else 80)
    addrs = await _resolve(host, port)
    if not policy.host_allowed(host, port):
        for addr in addrs:
            if not (is_public(addr) or policy.address_allowed(addr, port)):
                raise ApiError(
                    errors.URL_DOWNLOAD_FAILED,
                    f"refusing to fetch {host!r}: address {addr} is not public (allow-list it to permit)",
                )
    addr = addrs[0]
    ip_host = f"[{addr}]" if addr.version == 6 else str(addr)
    netloc = f"{ip_host}:{port}"
    target = f"{scheme}://{netloc}{parts.path or '/'}" + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return target, host_header, (host if scheme == "https" else None)


class FetchGate:
    """Bounds the downloads in flight per appid and in all (one event loop: asyncio primitives).

    A download waits for a slot at most `total_timeout_s`, then fails with -1403: one tenant's
    slow urls can neither take every slot nor keep another tenant's requests waiting.
    """

    def __init__(self, policy: FetchPolicy):
        self.policy = policy
        self._all = asyncio.Semaphore(policy.max_in_flight)
        self._per_appid: dict[str, asyncio.Semaphore] = {}  # signed appids only: a bounded set
        self._in_flight: dict[str, int] = {}

    @property
    def in_flight(self) -> int:
        return sum(self._in_flight.values())

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self.policy.max_in_flight

    async def fetch(self, appid: str, url: str) -> bytes:
        mine = self._per_appid.setdefault(appid, asyncio.Semaphore(self.policy.per_appid))
        try:
            async with asyncio.timeout(self.policy.total_timeout_s):
                await mine.acquire()
        except TimeoutError:
            raise ApiError(errors.IMAGE_DOWNLOAD_FAILED,
                           f"more than {self.policy.per_appid} url downloads at once for this appid") from None
        try:
            try:
                async with asyncio.timeout(self.policy.total_timeout_s):
                    await self._all.acquire()
            except TimeoutError:
                raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "too many url downloads at once") from None
            self._in_flight[appid] = self._in_flight.get(appid, 0) + 1
            try:
                return await fetch_async(url, self.policy)
            finally:
                self._in_flight[appid] -= 1
                if not self._in_flight[appid]:
                    del self._in_flight[appid]
                self._all.release()
        finally:
            mine.release()

    def health(self) -> dict:
        return {"in_flight": self.in_flight, "limit": self.policy.max_in_flight, "saturated": self.saturated}


def fetch(url: str, policy: FetchPolicy, verify: ssl.SSLContext | bool = True) -> bytes:
    """`fetch_async` for synchronous callers (CLI, tests)."""
    return asyncio.run(fetch_async(url, policy, verify=verify))


async def fetch_async(url: str, policy: FetchPolicy, *, verify: ssl.SSLContext | bool = True) -> bytes:
    """The body of `url` (status 200), or ApiError -1308 / -1403, within policy.total_timeout_s."""
    if not isinstance(url, str) or not url.strip():
        raise ApiError(errors.PARAMETER_EMPTY, "url is empty")
    try:
        async with asyncio.timeout(policy.total_timeout_s):
            return await _fetch(url.strip(), policy, verify)
    except TimeoutError:
        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED,
                       f"download not complete within {policy.total_timeout_s:g} s") from None


async def _fetch(url: str, policy: FetchPolicy, verify: ssl.SSLContext | bool) -> bytes:
    timeout = httpx.Timeout(policy.total_timeout_s, connect=policy.connect_timeout_s)
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False, verify=verify) as client:
        current = url
        for _hop in range(policy.max_redirects + 1):
            target, host_header, sni = await _checked_target(current, policy)
            extensions = {"sni_hostname": sni} if sni else {}
            try:
                # identity: the body is streamed raw (the cap counts wire bytes), so it must
                # not arrive gzip-encoded as httpx's default Accept-Encoding would invite
                headers = {"Host": host_header, "Accept": "image/*", "Accept-Encoding": "identity"}
                async with client.stream("GET", target, headers=headers, extensions=extensions) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "redirect without a location")
                        current = urljoin(current, location)
                        continue
                    return await _body(resp, policy)
            except httpx.TimeoutException:
                raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "download timed out") from None
            except httpx.HTTPError as exc:
                raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, f"download failed: {type(exc).__name__}") from None
        raise ApiError(errors.URL_DOWNLOAD_FAILED, f"more than {policy.max_redirects} redirects")


async def _body(resp: httpx.Response, policy: FetchPolicy) -> bytes:
    if resp.status_code != 200:
        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, f"image url answered HTTP {resp.status_code}")
    if resp.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "image url answered with a compressed body")
    declared = resp.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > policy.max_bytes:
        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, f"image larger than {policy.max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.aiter_raw():
        size += len(chunk)
        if size > policy.max_bytes:
            raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, f"image larger than {policy.max_bytes} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "image url returned an empty body")
    return body
