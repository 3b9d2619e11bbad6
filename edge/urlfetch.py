"""Safe download of caller-chosen image urls (a server-side request: treat it as hostile).

http(s) only; the host is resolved once, every address checked, and the connection made to
the checked address (Host header and TLS SNI keep the name), so DNS rebinding cannot swap in an
internal address. Loopback, private, link-local (incl. 169.254.169.254), multicast, reserved and
unique-local (incl. fd00:ec2::254) addresses are refused unless the operator allow-list names the
host or a CIDR containing the address. Redirects are followed by hand, at most `max_redirects`,
each re-checked. The body is capped while streaming, with connect and total time limits.

Codes: -1308 for a url that may not be fetched (bad scheme or form, refused address, unknown
host, too many redirects); -1403 for a download that failed (connect error, timeout, HTTP
status other than 200, body over the cap, empty body).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from edge import errors
from edge.errors import ApiError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class FetchPolicy:
    connect_timeout_s: float = 3.0
    total_timeout_s: float = 10.0
    max_bytes: int = 1_572_864
    max_redirects: int = 3
    allow: tuple[str, ...] = ()  # host names or CIDRs
    _nets: tuple = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        nets = []
        for entry in self.allow:
            try:
                nets.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                pass  # a host name
        object.__setattr__(self, "_nets", tuple(nets))

    def host_allowed(self, host: str) -> bool:
        return host.lower().rstrip(".") in {a.lower().rstrip(".") for a in self.allow}

    def address_allowed(self, addr: Address) -> bool:
        return any(addr.version == n.version and addr in n for n in self._nets)


def is_public(addr: Address) -> bool:
    """True for an ordinary internet address (not loopback/private/link-local/metadata/...)."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return addr.is_global and not (
        addr.is_multicast or addr.is_reserved or addr.is_loopback or addr.is_link_local
        or addr.is_private or addr.is_unspecified
    )


def _resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
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


def _checked_target(url: str, policy: FetchPolicy) -> tuple[str, str, str | None]:
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
    addrs = _resolve(host, port)
    if not policy.host_allowed(host):
        for addr in addrs:
            if not (is_public(addr) or policy.address_allowed(addr)):
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


def fetch(url: str, policy: FetchPolicy, client: httpx.Client | None = None) -> bytes:
    """The body of `url` (status 200), or ApiError -1308 / -1403."""
    if not isinstance(url, str) or not url.strip():
        raise ApiError(errors.PARAMETER_EMPTY, "url is empty")
    deadline = time.monotonic() + policy.total_timeout_s
    own = client is None
    if own:
        client = httpx.Client(
            timeout=httpx.Timeout(policy.total_timeout_s, connect=policy.connect_timeout_s),
            follow_redirects=False, trust_env=False,
        )
    try:
        current = url.strip()
        for _hop in range(policy.max_redirects + 1):
            target, host_header, sni = _checked_target(current, policy)
            extensions = {"sni_hostname": sni} if sni else {}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "download timed out")
            timeout = httpx.Timeout(remaining, connect=min(policy.connect_timeout_s, remaining))
            try:
                with client.stream(
                    # identity: the body is streamed raw (the cap counts wire bytes), so it must
                    # not arrive gzip-encoded as httpx's default Accept-Encoding would invite
                    "GET", target, headers={"Host": host_header, "Accept": "image/*", "Accept-Encoding": "identity"},
                    extensions={**extensions, "timeout": timeout.as_dict()},
                ) as resp:
                    if resp.is_redirect:
                        location = resp.headers.get("location")
                        if not location:
                            raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "redirect without a location")
                        current = urljoin(current, location)
                        continue
                    if resp.status_code != 200:
                        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, f"image url answered HTTP {resp.status_code}")
                    if resp.headers.get("content-encoding", "identity").strip().lower() not in ("", "identity"):
                        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "image url answered with a compressed body")
                    declared = resp.headers.get("content-length")
                    if declared and declared.isdigit() and int(declared) > policy.max_bytes:
                        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, f"image larger than {policy.max_bytes} bytes")
                    chunks: list[bytes] = []
                    size = 0
                    for chunk in resp.iter_raw():
                        size += len(chunk)
                        if size > policy.max_bytes:
                            raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, f"image larger than {policy.max_bytes} bytes")
                        if time.monotonic() > deadline:
                            raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "download timed out")
                        chunks.append(chunk)
                    body = b"".join(chunks)
                    if not body:
                        raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "image url returned an empty body")
                    return body
            except httpx.TimeoutException:
                raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, "download timed out") from None
            except httpx.HTTPError as exc:
                raise ApiError(errors.IMAGE_DOWNLOAD_FAILED, f"download failed: {type(exc).__name__}") from None
        raise ApiError(errors.URL_DOWNLOAD_FAILED, f"more than {policy.max_redirects} redirects")
    finally:
        if own:
            client.close()
