"""How a face API listener (hub, or the edge's local API) is served by uvicorn: TLS and the
connection limits that keep silent or slow clients from holding it.

uvicorn times out only idle keep-alive connections: a client that connects and sends nothing, or
sends its headers a byte at a time, is held forever (about 1,000 such sockets used up the
1,024 open files of the unit). `GuardedH11` adds

- a header deadline: the request line and headers must arrive within `header_timeout_s` of the
  connection (or of the first byte of the next request on a kept-alive one);
- a header size limit: the request line and headers may hold `MAX_HEADER_BYTES` (16 KiB) in
  all, answered a short `431` and closed beyond (h11's own limit bounds only a block still
  incomplete after a read: 80 KB of headers arriving at once were served);
- a connection cap: past `max_connections` open connections a new one is closed at once, before
  it costs anything (uvicorn's own `limit_concurrency` only answers 503 once a request arrives,
  which a silent connection never sends);
- a share of that cap per client address: one address (an IPv6 /64) may hold at most
  `address_share` of it, TLS handshakes included, so one host replacing its silent connections as
  the deadline closes them can no longer hold the whole cap (1,000 silent connections from one
  address left 0 of 12 requests from another answered); past its share a connection is closed
  at accept, like one past the cap;
- one log line per condition (cap reached / cleared, slow clients dropped per minute, and
  uvicorn's or asyncio's repeated warnings once a minute with a count), never one per connection.

With TLS the protocol makes the handshake itself (`loop.start_tls`) instead of handing uvicorn
the certificate: asyncio's server-side TLS hands a connection to the protocol only once its
handshake is done and gives a silent client 60 s for it, uncounted by any cap, so thousands of
half-open handshakes could hold the listener. Here the handshake counts against the cap and lies
inside the header deadline: connect, handshake and headers within `header_timeout_s`.

Before the handshake, the first byte is peeked at (on a duplicate of the socket, within the same
deadline): plain http sent to the TLS port (`POST ...` where a TLS record starts with 0x16) is
answered a short `400` "use https" and closed, as nginx does with its 497, instead of zero bytes.

The body has its own deadline in the API (`limits.body_timeout_s`, code 3) and idle kept-alive
connections close after `keepalive_timeout_s`. Two more ways a connection outlived every timer:

- a request answered before its body was read (a refused signature, a rate limit, a body too
  slow): uvicorn cancels its keep-alive timer at the next byte and sets none again, so one more
  body byte held the connection for good (1,000 from four addresses, no key needed, kept every
  client out). The rest of that body is read and dropped while it keeps coming (a pause of
  `header_timeout_s` ends it), for `ANSWERED_LINGER_S` at most: a browser still uploading its
  photos then reads the answer (a login page, a 413) instead of a reset connection, and once the
  body is in the connection goes on as any kept-alive one (a client's body often follows its
  headers in a packet of its own: closing there broke the next request of a kept connection);
- a client that does not read its answers (a public stylesheet asked 100 times pipelined): the
  answer waited for room in the send buffer for ever. Once the buffer stays full for
  `WRITE_STALL_S`, the connection is closed.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import h11
import uvicorn
from pydantic import Field, model_validator
from uvicorn.protocols.http.h11_impl import H11Protocol

from edge.core.settings import ConfigError, Section, require_private

log = logging.getLogger("edge.api.serving")

# Request line plus headers: real SDK requests send under 1 KB.
MAX_HEADER_BYTES = 16 * 1024
# The blank line that ends a header block, as h11 finds it (bare LF line ends are accepted too).
_HEADER_END = re.compile(rb"\n\r?\n")


def _plain_answer(status: bytes, text: bytes) -> bytes:
    """A complete short text/plain response that closes the connection: the refusals made
    before any request reaches the app, fixed bytes with no echo of what the client sent."""
    return (b"HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (status, len(text), text))


HEADERS_TOO_LARGE_ANSWER = _plain_answer(b"431 Request Header Fields Too Large",
                                         b"Request line and headers exceed 16 KiB.\n")
# What plain http sent to a TLS port gets (nginx answers its 497 so): short, fixed, no echo of
# anything the client sent (no Host in a redirect), and no face API answer.
PLAIN_HTTP_ANSWER = _plain_answer(b"400 Bad Request",
                                  b"This port serves HTTPS only: send the request to https:// instead of http://.\n")


@dataclass(frozen=True)
class Listener:
    """Where and how to listen."""

    host: str = "127.0.0.1"
    port: int = 8090
    tls_cert: str = ""  # PEM certificate chain; with tls_key, serve HTTPS
    tls_key: str = ""
    header_timeout_s: float = 10.0
    keepalive_timeout_s: float = 5.0
    max_connections: int = 1000
    address_share: float = 0.25  # ListenerSettings.address_share

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert else "http"

    @property
    def max_per_address(self) -> int:
        """Open connections (TLS handshakes included) one client address may hold."""
        return max(1, int(self.max_connections * self.address_share))


class ListenerSettings(Section):
    """The settings of a listener, shared by the hub's [server] and the edge's [api]."""

    host: str = Field("127.0.0.1", description="Address to listen on (0.0.0.0 for every interface).")
    port: int = Field(8090, ge=0, le=65535, description="TCP port.")
    tls_cert: str = Field("", description="PEM certificate (chain) file: with tls_key, serve HTTPS\n"
                          "(docs/security.md#tls).")
    tls_key: str = Field("", description="PEM private key of tls_cert; must not be readable by group/others.")
    header_timeout_s: float = Field(10.0, gt=0, description="A connection whose request headers take longer is closed.")
    keepalive_timeout_s: float = Field(5.0, gt=0, description="An idle kept-alive connection is closed after this.")
    max_connections: int = Field(1000, ge=1, description="Open connections at most; more are closed at once\n"
                                 "(keep it well below the unit's LimitNOFILE).")
    address_share: float = Field(0.25, gt=0, le=1, description=(
        "The fraction of max_connections one client address (an IPv6 /64) may hold, TLS\n"
        "handshakes included; more are closed at once. Set 1 behind a reverse proxy on this host\n"
        "(every connection then comes from the proxy's address)."))

    @model_validator(mode="after")
    def _tls_files(self) -> ListenerSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if self.tls_key:
            try:
                require_private(self.tls_key, "TLS key")
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return self

    def listener(self) -> Listener:
        return Listener(self.host, self.port, self.tls_cert, self.tls_key, self.header_timeout_s,
                        self.keepalive_timeout_s, self.max_connections, self.address_share)


class _Throttled:
    """A log line at the first event, then at most one summary per `every_s`."""

    def __init__(self, message: str, every_s: float = 60.0):
        self.message = message
        self.every_s = every_s
        self.count = 0
        self._last = float("-inf")

    def hit(self, *args: object) -> None:
        self.count += 1
        now = time.monotonic()
        if now - self._last >= self.every_s:
            log.warning(self.message, self.count, *args)
            self._last = now
            self.count = 0


# After an answer sent before its request's body came, the rest of the body is dropped for this
# long at most (a photo upload on a slow link finishes; a trickle does not hold the connection).
ANSWERED_LINGER_S = 30.0
# A connection whose answer finds no room in the send buffer for this long is closed: the client
# reads nothing (a slow link still drains a buffer of 64 KiB well within it).
WRITE_STALL_S = 30.0


class _Guard:
    """State shared by the connections of one server."""

    def __init__(self, listener: Listener):
        self.listener = listener
        self.tls = _tls_context(listener) if listener.tls_cert else None
        self.handshaking = 0  # TLS connections accepted, handshake not finished
        self.capped = False
        self.refused = 0
        self.slow = _Throttled("dropped %d connection(s) that sent no complete request headers in time")
        self.not_reading = _Throttled(f"dropped %d connection(s) that read no answer for {WRITE_STALL_S:g} s")
        self.too_large = _Throttled("refused %d request(s) whose request line and headers exceeded 16 KiB")
        self.per_address: dict[str, int] = {}  # client address (IPv6: its /64) -> open connections
        self.over_share = _Throttled("refused %d connection(s) from an address holding its share of the "
                                     "connection cap (latest: %s)")


def _address_key(transport: asyncio.BaseTransport) -> str:
    """Whom a connection counts against: its IPv4 address, or its IPv6 /64 (one host's prefix)."""
    peer = transport.get_extra_info("peername")
    host = peer[0] if isinstance(peer, tuple) and peer else ""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def _tls_context(listener: Listener) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(listener.tls_cert, listener.tls_key)
    return context


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection cap (see the module doc)."""

    guard: _Guard  # set on the subclass made per server by `guarded_protocol`

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._header_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        self._linger_until = 0.0  # loop time: the end of the drop of a body answered early
        self._answered: object = None  # the request cycle answered before its body came
        self._early: list[bytes] | None = None  # request bytes that arrived before the TLS handshake returned
        self._phase = ""  # TLS only: "sniff" (first byte awaited), "tls", "refuse" (plain http)
        self._sniffer: socket.socket | None = None
        self._address: str | None = None  # counted in guard.per_address until released
        guard = self.guard
        if guard.tls is not None:
            transport.pause_reading()  # nothing reaches h11 before the handshake
            self.transport = transport
            if self._over_cap(len(self.connections) + guard.handshaking + 1, transport):
                return
            if self._over_share(transport):
                return
            guard.handshaking += 1  # until the handshake ends, or the connection if refused
            self._early = []
            self._arm_header_timer()  # the sniff and the handshake spend the header deadline too
            try:
                # Peek at the first byte on a duplicate of the socket (the transport owns the
                # original): a TLS client starts with a handshake record, plain http with a method.
                self._sniffer = transport.get_extra_info("socket").dup()
                self._sniffer.setblocking(False)
                self._phase = "sniff"
                self.loop.add_reader(self._sniffer.fileno(), self._sniffed, transport)
            except Exception:  # no socket to peek at (another event loop): straight to TLS
                self._stop_sniffing()
                self._start_tls(transport)
            return
        # refused before uvicorn counts it: a burst of refused connections, not yet lost, would
        # otherwise fill `self.connections` and refuse the next client's too
        self.transport = transport
        if self._over_cap(len(self.connections) + 1, transport) or self._over_share(transport):
            return
        super().connection_made(transport)
        self._arm_header_timer()

    def _over_share(self, transport: asyncio.Transport) -> bool:
        """Count the connection against its address; close it at once past the address's share."""
        guard = self.guard
        key = _address_key(transport)
        held = guard.per_address.get(key, 0)
        if held >= guard.listener.max_per_address:
            guard.over_share.hit(key)
            transport.abort()
            return True
        guard.per_address[key] = held + 1
        self._address = key
        return False

    def _release_address(self) -> None:
        """Uncount the connection (once, whichever way it ends)."""
        key, self._address = self._address, None
        if key is None:
            return
        held = self.guard.per_address.get(key, 0) - 1
        if held > 0:
            self.guard.per_address[key] = held
        else:
            self.guard.per_address.pop(key, None)

    def _over_cap(self, open_connections: int, transport: asyncio.Transport) -> bool:
        guard = self.guard
        if open_connections > guard.listener.max_connections:
            if not guard.capped:
                guard.capped = True
                log.warning("connection cap of %d reached: refusing new connections", guard.listener.max_connections)
            guard.refused += 1
            transport.abort()
            return True
        if guard.capped and open_connections < guard.listener.max_connections * 0.9:
            guard.capped = False
            log.warning("below the connection cap again after refusing %d connection(s)", guard.refused)
            guard.refused = 0
        return False

    def _sniffed(self, transport: asyncio.Transport) -> None:
        try:
            first = self._sniffer.recv(1, socket.MSG_PEEK) if self._sniffer else b""
        except (BlockingIOError, InterruptedError):
            return  # a spurious wake-up: keep waiting, the header deadline still runs
        except OSError:
            first = b""
        self._stop_sniffing()
        if transport.is_closing():
            return
        if not first:  # closed before a byte: connection_lost settles the count
            transport.abort()
        elif first.isalpha() and first.isupper():  # `POST /face/...`: http sent to the https port
            self._refuse_plain_http(transport)
        else:  # 0x16, a TLS handshake (anything else fails there, silently, as before)
            self._start_tls(transport)

    def _stop_sniffing(self) -> None:
        if self._sniffer is not None:
            try:
                self.loop.remove_reader(self._sniffer.fileno())
            finally:
                self._sniffer.close()
                self._sniffer = None

    def _refuse_plain_http(self, transport: asyncio.Transport) -> None:
        """A short 400 telling the client to use https, as nginx's 497 does."""
        transport.resume_reading()  # paused for the handshake: the request is read and dropped
        self._answer_and_close(transport, "refuse", PLAIN_HTTP_ANSWER)

    def _answer_and_close(self, transport: asyncio.Transport, phase: str, answer: bytes) -> None:
        """Send a fixed refusal and close. Later bytes are read and dropped (`phase`): closing on
        unread bytes would reset the connection before the client reads the answer; the connection
        closes once the client does, or after a short linger."""
        self._phase = phase
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(min(2.0, self.guard.listener.header_timeout_s), transport.abort)
        transport.write(answer)
        if transport.can_write_eof():
            transport.write_eof()

    def _start_tls(self, transport: asyncio.Transport) -> None:
        self._phase = "tls"
        handshake = self.loop.create_task(self.loop.start_tls(
            transport, self, self.guard.tls, server_side=True,
            ssl_handshake_timeout=self.guard.listener.header_timeout_s))
        handshake.add_done_callback(functools.partial(self._tls_done, transport))

    def eof_received(self) -> bool | None:
        if self._phase in ("refuse", "too_large"):
            return False  # the client has read the answer and closed: close too
        return super().eof_received()

    def _tls_done(self, plain: asyncio.Transport, handshake: asyncio.Task) -> None:
        self.guard.handshaking -= 1
        self._phase = ""
        if handshake.cancelled() or handshake.exception() is not None or self._header_timer is None:
            # a failed or timed-out handshake is a client's problem: no log line per connection
            self._cancel_header_timer()
            self._early = None
            self._release_address()
            plain.abort()
            return
        early, self._early = self._early or [], None
        super().connection_made(handshake.result())
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        if self._phase == "answered":  # the rest of a body answered early: uvicorn drops it
            self._late_body(data)
            return
        if self._phase in ("refuse", "too_large"):  # the request answered with 400 / 431: dropped
            return
        if self._early is not None:  # TLS is up but start_tls has not returned yet
            self._early.append(data)
            return
        # h11 stays IDLE until the request line and every header have arrived
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_header_timer()  # first bytes of the next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_header_timer()

    def handle_events(self) -> None:
        # h11 bounds only an *incomplete* header block (max_incomplete_event_size): a complete one
        # of any size arriving in one read was parsed and served. Measure what h11 holds before it
        # parses a request: here on every read, and after a response before a pipelined request.
        if self.conn.their_state is h11.IDLE and self._header_block_too_large():
            self._refuse_large_headers()
            return
        super().handle_events()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.SEND_BODY:
            # answered before its body came (the module's docstring): uvicorn drops the rest as
            # it comes and keeps the connection for the next request once it is in (a client's
            # body often follows its headers in a packet of its own); a pause, or the cap, ends it
            self._phase = "answered"
            self._answered = self.cycle
            self._linger_until = self.loop.time() + ANSWERED_LINGER_S
            self._linger()

    def _late_body(self, data: bytes) -> None:
        self._linger()
        super().data_received(data)
        if self.transport.is_closing():
            return
        if self.cycle is self._answered and self.conn.their_state is h11.SEND_BODY:
            return  # still that body
        self._phase = ""  # the body is in: the connection goes on as any kept-alive one
        self._cancel_header_timer()
        if self.conn.their_state is h11.IDLE:  # nothing more came: idle, as after any answer
            self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive,
                                                                self.timeout_keep_alive_handler)

    def _linger(self) -> None:
        """(Re)arm the close of a connection answered early whose body is still owed: a pause of
        header_timeout_s, or ANSWERED_LINGER_S in all. uvicorn's keep-alive timer is not for
        this (it would cut an upload short, and the next byte cancels it for good)."""
        self._unset_keepalive_if_required()
        self._cancel_header_timer()
        left = self._linger_until - self.loop.time()
        if left <= 0:
            self.transport.abort()
            return
        self._header_timer = self.loop.call_later(min(self.guard.listener.header_timeout_s, left),
                                                  self.transport.abort)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(WRITE_STALL_S, self._write_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        self._cancel_write_timer()

    def _write_stalled(self) -> None:
        self._write_timer = None
        if not self.transport.is_closing():
            self.guard.not_reading.hit()
            self.transport.abort()

    def _cancel_write_timer(self) -> None:
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _header_block_too_large(self) -> bool:
        held, _ = self.conn.trailing_data  # at most one read past MAX_HEADER_BYTES while IDLE
        if len(held) <= MAX_HEADER_BYTES:
            return False  # complete and small enough, or still arriving (within the deadline)
        return _HEADER_END.search(held, 0, MAX_HEADER_BYTES) is None

    def _refuse_large_headers(self) -> None:
        """A short 431 and close."""
        self.guard.too_large.hit()
        self._answer_and_close(self.transport, "too_large", HEADERS_TOO_LARGE_ANSWER)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_write_timer()
        self._release_address()
        if self._phase in ("sniff", "refuse"):  # never handed to TLS: h11 never saw it either
            self._stop_sniffing()
            self._phase = ""
            self.guard.handshaking -= 1
            return
        if self._early is not None:  # lost during the handshake: h11 never saw this connection
            return
        super().connection_lost(exc)

    def _arm_header_timer(self) -> None:
        self._header_timer = self.loop.call_later(self.guard.listener.header_timeout_s, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.guard.slow.hit()
            self.transport.abort()


class _OncePerMinute(logging.Filter):
    """Lets a repeated message through once a minute (with how many were held back), so a flood
    of bad requests, or accept() out of file descriptors, is one line per condition, not per event."""

    def __init__(self, every_s: float = 60.0):
        super().__init__()
        self.every_s = every_s
        self._seen: dict[str, list[float]] = {}  # message -> [last shown, held back]
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = str(record.msg)
        now = time.monotonic()
        with self._lock:
            if len(self._seen) > 1000:
                self._seen.clear()
            seen = self._seen.setdefault(key, [float("-inf"), 0])
            if now - seen[0] < self.every_s:
                seen[1] += 1
                return False
            if seen[1]:
                record.msg = f"{record.msg} (and {int(seen[1])} more like it in the last minute)"
            seen[0], seen[1] = now, 0
        return True


_THROTTLE = _OncePerMinute()
for _name in ("uvicorn.error", "asyncio"):
    logging.getLogger(_name).addFilter(_THROTTLE)
# uvicorn does not know about our TLS and would announce http://: the hub logs its own line
logging.getLogger("uvicorn.error").addFilter(lambda record: not str(record.msg).startswith("Uvicorn running on"))


def guarded_protocol(listener: Listener) -> type[GuardedH11]:
    """A GuardedH11 subclass bound to one server's limits and counters."""
    return type("GuardedH11Bound", (GuardedH11,), {"guard": _Guard(listener)})


def uvicorn_config(app, listener: Listener, **kw) -> uvicorn.Config:
    """The uvicorn.Config serving `app` on `listener` (TLS when a certificate is configured)."""
    if bool(listener.tls_cert) != bool(listener.tls_key):
        raise ValueError("tls_cert and tls_key go together")
    # TLS is not given to uvicorn: the protocol makes the handshake (see the module doc).
    # proxy_headers off: uvicorn otherwise takes the client's address from X-Forwarded-For on
    # any connection from the loopback, where the hub sits behind its TLS proxy, and a client
    # that sent that header itself chose the address the login rate limit counts.
    return uvicorn.Config(
        app, host=listener.host, port=listener.port, http=guarded_protocol(listener),
        timeout_keep_alive=max(1, round(listener.keepalive_timeout_s)),
        h11_max_incomplete_event_size=MAX_HEADER_BYTES, proxy_headers=False, **kw,
    )
