"""url inputs over https and IPv6: a real TLS server on loopback with a self-signed certificate
(made with the openssl command line) and a real http.server on [::1].

fetch() connects to the address it checked, keeping the url's host name for the Host header and
for TLS (SNI and certificate name check), so DNS cannot swap in another address and TLS still
proves the name the caller gave.
"""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
from contextlib import ExitStack

import pytest

from edge.api.urlfetch import FetchPolicy, fetch
from tests.conftest import code_of
from tests.support.loopback import QuietHandler, serving

PHOTO = b"\xff\xd8\xff\xe0 not really a jpeg, only bytes to carry"


class _Handler(QuietHandler):
    def do_GET(self):  # noqa: N802
        if self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
            return
        self.reply(200, PHOTO + b"|host=" + self.headers.get("Host", "").encode())


def _self_signed(tmp_path, name: str, san: str) -> tuple[str, str]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not installed: cannot make a test certificate")
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-addext", f"subjectAltName={san}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    """An https server whose certificate names only DNS:localhost; yields (port, cert path)."""
    cert, key = _self_signed(tmp_path_factory.mktemp("tls"), "localhost", "DNS:localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    with serving(_Handler, wrap_socket=lambda sock: ctx.wrap_socket(sock, server_side=True)) as server:
        yield server.server_address[1], cert


@pytest.fixture(scope="module")
def ipv6_server():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")

    class V6Server(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6

    with ExitStack() as stack:
        try:
            server = stack.enter_context(serving(_Handler, "::1", V6Server))
        except OSError as exc:
            pytest.skip(f"no IPv6 loopback here: {exc}")
        yield server.server_address[1]


def trusting(cert: str) -> ssl.SSLContext:
    """Trust in the test certificate (the hub's own fetches trust the system CAs)."""
    return ssl.create_default_context(cafile=cert)


def local(port: int) -> FetchPolicy:
    return FetchPolicy(allow=(f"localhost:{port}", f"127.0.0.1/32:{port}", f"[::1/128]:{port}"),
                       total_timeout_s=5.0, connect_timeout_s=2.0)


def test_https_image_from_a_trusted_certificate_is_fetched_with_its_host_name(tls_server):
    port, cert = tls_server
    body = fetch(f"https://localhost:{port}/a.jpg", local(port), trusting(cert))
    assert body == PHOTO + f"|host=localhost:{port}".encode()


def test_https_with_a_certificate_nobody_trusts_is_a_failed_download(tls_server):
    port, _ = tls_server
    assert code_of(fetch, f"https://localhost:{port}/a.jpg", local(port)) == -1403


def test_https_certificate_is_checked_against_the_url_host_not_the_connected_address(tls_server):
    # The certificate names DNS:localhost only; asking for the bare address must not pass just
    # because fetch() connects to that address in both cases.
    port, cert = tls_server
    assert code_of(fetch, f"https://127.0.0.1:{port}/a.jpg", local(port), trusting(cert)) == -1403


def test_https_redirect_to_a_metadata_address_is_refused(tls_server):
    port, cert = tls_server
    assert code_of(fetch, f"https://localhost:{port}/to-metadata", local(port), trusting(cert)) == -1308


def test_ipv6_loopback_is_fetched_when_allow_listed_by_cidr(ipv6_server):
    policy = FetchPolicy(allow=(f"[::1/128]:{ipv6_server}",), total_timeout_s=5.0)
    body = fetch(f"http://[::1]:{ipv6_server}/a.jpg", policy)
    assert body == PHOTO + f"|host=[::1]:{ipv6_server}".encode()


def test_ipv6_loopback_is_fetched_when_allow_listed_by_address(ipv6_server):
    policy = FetchPolicy(allow=(f"[::1]:{ipv6_server}",), total_timeout_s=5.0)
    assert fetch(f"http://[::1]:{ipv6_server}/a.jpg", policy).startswith(PHOTO)


def test_ipv6_loopback_without_allow_list_is_refused(ipv6_server):
    assert code_of(fetch, f"http://[::1]:{ipv6_server}/a.jpg", FetchPolicy(total_timeout_s=5.0)) == -1308
    # an IPv4 allow-list entry does not open the IPv6 loopback
    policy = FetchPolicy(allow=(f"127.0.0.0/8:{ipv6_server}",), total_timeout_s=5.0)
    assert code_of(fetch, f"http://[::1]:{ipv6_server}/a.jpg", policy) == -1308
