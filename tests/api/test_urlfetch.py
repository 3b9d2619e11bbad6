"""url inputs: fetched from a real loopback http.server only when allow-listed, with the size
cap, redirect re-checks and time limits enforced (unit level and through the hub)."""

from __future__ import annotations

import http.server
import time

import pytest

from edge.api.urlfetch import FetchPolicy, fetch, is_public
from tests.conftest import code_of
from tests.support.hub import post, start_hub
from tests.support.loopback import QuietHandler, serving


class _Handler(QuietHandler):
    routes: dict = {}

    def do_GET(self):  # noqa: N802
        route = self.routes.get(self.path.split("?")[0])
        if route is None:
            self.send_response(404)
            self.end_headers()
            return
        kind, value = route
        if kind == "redirect":
            self.send_response(302)
            self.send_header("Location", value)
            self.end_headers()
        elif kind == "slow":
            self.send_response(200)
            self.send_header("Content-Length", "100000")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x" * 100)
                self.wfile.flush()
                time.sleep(0.1)
        else:
            self.reply(200, value)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the fetcher hanging up on /big.jpg and /slow.jpg is what those tests want


@pytest.fixture(scope="module")
def image_server(faces_dir):
    photo = (faces_dir / "five_celebrity/Ben_Afflek/val_1.jpg").read_bytes()
    _Handler.routes = {
        "/ben.jpg": ("body", photo),
        "/big.jpg": ("body", b"\xff\xd8" + b"\x00" * 2_000_000),
        "/to-ben": ("redirect", "/ben.jpg"),
        "/to-metadata": ("redirect", "http://169.254.169.254/latest/meta-data/"),
        "/loop": ("redirect", "/loop"),
        "/slow.jpg": ("slow", None),
    }
    with serving(_Handler, server_class=_QuietServer) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}", photo


def allow(base: str) -> FetchPolicy:
    """Loopback allow-listed for the image server's port only."""
    return FetchPolicy(allow=(f"127.0.0.1/32:{base.rsplit(':', 1)[1]}",), total_timeout_s=2.0, connect_timeout_s=1.0)


def test_allow_listed_loopback_image_is_fetched(image_server):
    base, photo = image_server
    assert fetch(f"{base}/ben.jpg", allow(base)) == photo


def test_loopback_without_allow_list_is_refused(image_server):
    base, _ = image_server
    assert code_of(fetch, f"{base}/ben.jpg", FetchPolicy()) == -1308


def test_allow_list_by_host_name(image_server):
    base, photo = image_server
    url = base.replace("127.0.0.1", "localhost") + "/ben.jpg"
    port = int(base.rsplit(":", 1)[1])
    assert fetch(url, FetchPolicy(allow=(f"localhost:{port}",))) == photo


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.org/a.jpg", "gopher://x/", "http://user:pw@example.org/a.jpg",
    "http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/", "http://10.0.0.1/a.jpg",
    "http://192.168.1.1/a.jpg", "http://[::1]/a.jpg", "http://0.0.0.0/", "http://224.0.0.1/",
    "http://[::ffff:127.0.0.1]/", "http:///nohost", "http://no-such-host.invalid/a.jpg",
])
def test_dangerous_or_unusable_urls_are_refused_with_1308(url):
    assert code_of(fetch, url, FetchPolicy(total_timeout_s=2.0)) == -1308


def test_public_addresses_are_public():
    import ipaddress

    assert is_public(ipaddress.ip_address("8.8.8.8"))
    assert not is_public(ipaddress.ip_address("100.64.0.1"))  # carrier-grade NAT


def test_redirects_are_followed_and_each_target_rechecked(image_server):
    base, photo = image_server
    assert fetch(f"{base}/to-ben", allow(base)) == photo
    assert code_of(fetch, f"{base}/to-metadata", allow(base)) == -1308
    assert code_of(fetch, f"{base}/loop", allow(base)) == -1308


def test_body_over_the_cap_is_refused_while_streaming(image_server):
    base, _ = image_server
    assert code_of(fetch, f"{base}/big.jpg", allow(base)) == -1403


def test_http_error_status_is_1403(image_server):
    base, _ = image_server
    assert code_of(fetch, f"{base}/missing.jpg", allow(base)) == -1403


def test_slow_download_stops_at_the_total_time_limit(image_server):
    base, _ = image_server
    policy = allow(base).model_copy(update={"total_timeout_s": 0.5})
    assert code_of(fetch, f"{base}/slow.jpg", policy) == -1403


def test_unreachable_port_is_1403():
    from tests.conftest import free_port

    base = f"http://127.0.0.1:{free_port()}"
    assert code_of(fetch, f"{base}/a.jpg", allow(base)) == -1403


def test_hub_fetches_url_inputs_through_its_allow_list(tmp_path, image_server, models_dir):
    base, photo = image_server
    with start_hub(tmp_path, url_fetch={"allow": [f"127.0.0.1/32:{base.rsplit(':', 1)[1]}"],
                                              "total_timeout_s": 2.0}) as hub:
        client = hub.client(timeout=30)
        client.newperson("ben", ["g"], url=f"{base}/ben.jpg")
        assert client.verify("ben", url=f"{base}/to-ben")["ismatch"] is True
        # the url wins over an image when both are given
        body = post(hub, "verify", json={"appid": hub.appid, "person_id": "ben", "url": f"{base}/missing.jpg",
                                         "image": "aGVsbG8="})
        assert body["code"] == -1403
        body = post(hub, "addface", json={"appid": hub.appid, "person_id": "ben",
                                          "urls": [f"{base}/missing.jpg", "http://10.1.2.3/a.jpg"]})
        assert body["code"] == -1403 and body["data"]["ret_codes"] == [-1403, -1308]
        assert client.compare(url_a=f"{base}/ben.jpg", url_b=f"{base}/to-ben")["similarity"] > 90
        client.close()


def test_hub_refuses_loopback_urls_without_allow_list(hub_server, image_server):
    base, _ = image_server
    body = post(hub_server, "detect", json={"appid": hub_server.appid, "url": f"{base}/ben.jpg"})
    assert body["code"] == -1308


def test_image_from_a_server_that_compresses_when_allowed_arrives_as_the_image(faces_dir):
    # fetch() streams the raw bytes (so the cap counts what crosses the wire); it must therefore
    # ask for no content-coding, or a gzip-happy server hands back compressed bytes as the "image".
    import gzip

    photo = (faces_dir / "five_celebrity/Ben_Afflek/val_1.jpg").read_bytes()

    class Gzipping(QuietHandler):
        def do_GET(self):  # noqa: N802
            gz = "gzip" in self.headers.get("Accept-Encoding", "") or self.path == "/always-gzip.jpg"
            self.reply(200, gzip.compress(photo) if gz else photo, {"Content-Encoding": "gzip"} if gz else None)

    with serving(Gzipping) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        assert fetch(f"{base}/ben.jpg", allow(base)) == photo
        # one that compresses anyway is a failed download, not undecodable bytes
        assert code_of(fetch, f"{base}/always-gzip.jpg", allow(base)) == -1403
