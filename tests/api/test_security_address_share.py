"""One client address holding the whole connection cap (issue 24 item 5), against a real hub.

1,000 silent TCP connections from one address, replaced as the header deadline closed them (or
as many half-done TLS handshakes), left 0 of 12 requests from another client answered over 24 s,
plain and TLS. Here a cap of 40 with a share of a quarter (10 per address) shows it in seconds.
On loopback every client would be 127.0.0.1: the attacker binds 127.0.0.2 (Linux answers the
whole 127/8) and the hub, listening on 127.0.0.1, sees two addresses.
"""

from __future__ import annotations

import logging
import selectors
import socket
import ssl
import time

import pytest

from tests.support.hub import start_hub

CAP = 40
SHARE = 0.25
HEADER_TIMEOUT_S = 1.0
ATTACKER = "127.0.0.2"
ATTACK_SOCKETS = 200  # well over the cap: the attacker tries to hold all of it
ATTACK_S = 4.0


def _loopback_alias_works() -> bool:
    try:
        with socket.socket() as probe:
            probe.bind((ATTACKER, 0))
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _loopback_alias_works(), reason=f"cannot bind {ATTACKER} on this host")


def _server(**extra) -> dict:
    return {"header_timeout_s": HEADER_TIMEOUT_S, "keepalive_timeout_s": 1, "max_connections": CAP,
            "address_share": SHARE, **extra}


@pytest.fixture(scope="module")
def plain_hub(tmp_path_factory, models_dir):
    with start_hub(tmp_path_factory.mktemp("share"), server=_server()) as hub:
        yield hub


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory, tls_files, models_dir):
    with start_hub(tmp_path_factory.mktemp("share-tls"), server=_server(
            tls_cert=str(tls_files.cert), tls_key=str(tls_files.key))) as hub:
        yield hub


def _port(hub) -> int:
    return int(hub.url.rsplit(":", 1)[1])


class _Attacker:
    """Up to ATTACK_SOCKETS connections from 127.0.0.2 that send nothing (or, against TLS, the
    first bytes of a handshake and no more), each replaced as soon as the server closes it."""

    def __init__(self, port: int, partial: bytes = b""):
        self.port = port
        self.partial = partial
        self.selector = selectors.DefaultSelector()
        self.opened = 0

    def _open(self) -> None:
        sock = socket.socket()
        try:
            sock.bind((ATTACKER, 0))
            sock.settimeout(2)
            sock.connect(("127.0.0.1", self.port))
            if self.partial:
                sock.sendall(self.partial)
        except OSError:
            sock.close()
            return
        sock.setblocking(False)
        self.selector.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def fill(self) -> None:
        while len(self.selector.get_map()) < ATTACK_SOCKETS:
            before = len(self.selector.get_map())
            self._open()
            if len(self.selector.get_map()) == before:
                break

    def replace_closed(self, wait_s: float) -> None:
        """Drop the sockets the server closed (readable: EOF or reset) and open new ones."""
        for key, _ in self.selector.select(timeout=wait_s):
            sock = key.fileobj
            try:
                if sock.recv(4096):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            self.selector.unregister(sock)
            sock.close()
        self.fill()

    def close(self) -> None:
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()


def _health(port: int, context: ssl.SSLContext | None) -> bool:
    """One GET /health from 127.0.0.1 with a 5 s deadline; True if answered 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            sock = context.wrap_socket(raw, server_hostname="127.0.0.1") if context else raw
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    except (OSError, ssl.SSLError):
        return False
    return answer.startswith(b"HTTP/1.1 200")


# The first bytes of a TLS ClientHello record header: the server waits for the rest.
_PARTIAL_HANDSHAKE = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"


@pytest.mark.parametrize("kind", ["plain", "tls"])
def test_one_address_holding_silent_connections_does_not_deny_another(kind, request, tls_files, caplog):
    caplog.set_level(logging.WARNING, logger="edge.api.serving")
    hub = request.getfixturevalue(f"{kind}_hub")
    context = ssl.create_default_context(cafile=str(tls_files.ca)) if kind == "tls" else None
    attacker = _Attacker(_port(hub), _PARTIAL_HANDSHAKE if kind == "tls" else b"")
    answered, asked = 0, 0
    try:
        attacker.fill()
        started = time.monotonic()
        next_ask = started + 0.3
        while time.monotonic() - started < ATTACK_S:
            attacker.replace_closed(0.05)
            if time.monotonic() >= next_ask:
                asked += 1
                answered += _health(_port(hub), context)
                next_ask = time.monotonic() + 0.3
    finally:
        attacker.close()
    assert attacker.opened > CAP  # the attacker did try to hold the whole cap
    assert asked >= 6
    assert answered == asked, f"{answered} of {asked} requests from 127.0.0.1 answered during the attack"
    assert any("share of the connection cap" in r.getMessage() and ATTACKER in r.getMessage()
               for r in caplog.records)


def test_the_share_is_a_fraction_of_the_cap_and_at_least_one():
    from edge.api.serving import Listener, ListenerSettings

    assert ListenerSettings().listener().max_per_address == 250
    assert Listener(max_connections=6, address_share=0.25).max_per_address == 1
    assert Listener(max_connections=40, address_share=1.0).max_per_address == 40
