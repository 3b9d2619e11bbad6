"""url inputs that used to freeze the hub, against a real slow-header server on loopback.

A server that sends its response headers a byte at a time held one fetch 40 s (the time limit
covered each read, not the whole fetch), and two addface calls with 20 such urls froze every
tenant's API (one shared pool of 40 worker threads) while /health said ok.
"""

from __future__ import annotations

import base64
import socket
import threading
import time

import pytest

from edge.api.urlfetch import FetchPolicy, fetch
from edge.core import errors
from edge.core.errors import ApiError
from tests.conftest import wait_until
from tests.support.hub import post, start_hub
from tests.support.loopback import LoopbackServer


class SlowHeaderServer(LoopbackServer):
    """Answers every connection with a status line, then one header byte every `every_s` seconds."""

    def __init__(self, every_s: float = 0.2, lasting_s: float = 30.0):
        self.every_s, self.lasting_s = every_s, lasting_s
        super().__init__()

    def handle(self, conn: socket.socket) -> None:
        end = time.monotonic() + self.lasting_s
        try:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while time.monotonic() < end and not self.stopped.is_set():
                conn.sendall(b"X")
                time.sleep(self.every_s)
        except OSError:
            pass
        finally:
            conn.close()


@pytest.fixture
def slow_server():
    server = SlowHeaderServer()
    yield server
    server.close()


def test_one_deadline_covers_headers_sent_a_byte_at_a_time(slow_server):
    policy = FetchPolicy(allow=(f"127.0.0.1/32:{slow_server.port}",), total_timeout_s=1.5, connect_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(ApiError) as err:
        fetch(f"http://127.0.0.1:{slow_server.port}/a.jpg", policy)
    assert err.value.code == errors.IMAGE_DOWNLOAD_FAILED
    assert time.monotonic() - started < 1.5 + 2.0  # the server would trickle for 30 s


def test_slow_urls_of_one_tenant_neither_freeze_another_nor_outlast_the_deadline(
        tmp_path, slow_server, faces_dir, models_dir):
    url_fetch = {"allow": [f"127.0.0.1/32:{slow_server.port}"], "total_timeout_s": 2.0, "connect_timeout_s": 1.0,
                 "per_appid": 4, "max_in_flight": 6}
    photo = base64.b64encode((faces_dir / "five_celebrity" / "Madonna" / "train_1.jpg").read_bytes()).decode()
    with start_hub(tmp_path, url_fetch=url_fetch) as hub:
        assert post(hub, "newperson", json={"appid": hub.appid, "person_id": "p", "group_ids": ["g"],
                                            "image": photo})["code"] == 0
        urls = [f"http://127.0.0.1:{slow_server.port}/{i}.jpg" for i in range(20)]
        answers: list[dict] = []

        def attack() -> None:
            answers.append(post(hub, "addface", json={"appid": hub.appid, "person_id": "p", "urls": urls}))

        attackers = [threading.Thread(target=attack) for _ in range(2)]
        started = time.monotonic()
        for t in attackers:
            t.start()
        time.sleep(0.5)
        # the other tenant is served while the downloads hang
        other = post(hub, "getgroupids", json={"appid": hub.other_appid}, authorization=_sign_other(hub))
        assert other["code"] == 0, other
        assert _health(hub)["url_fetch"]["in_flight"] <= 4  # one appid holds at most per_appid slots
        for t in attackers:
            t.join(timeout=60)
        # every url failed within its bounds: a slot waited for at most 2 s, a download lasted at most 2 s
        assert time.monotonic() - started < 20
        assert [a["code"] for a in answers] == [errors.IMAGE_DOWNLOAD_FAILED] * 2, answers
        assert all(set(a["data"]["ret_codes"]) == {errors.IMAGE_DOWNLOAD_FAILED} for a in answers)


def test_health_says_degraded_while_every_download_slot_is_taken(tmp_path, slow_server, models_dir):
    url_fetch = {"allow": [f"127.0.0.1/32:{slow_server.port}"], "total_timeout_s": 3.0, "per_appid": 2,
                 "max_in_flight": 2}
    with start_hub(tmp_path, url_fetch=url_fetch) as hub:
        urls = [f"http://127.0.0.1:{slow_server.port}/{i}.jpg" for i in range(2)]
        worker = threading.Thread(target=post, args=(hub, "detect"), kwargs={"json": {
            "appid": hub.appid, "url": urls[0]}})
        worker2 = threading.Thread(target=post, args=(hub, "detect"), kwargs={"json": {
            "appid": hub.appid, "url": urls[1]}})
        worker.start()
        worker2.start()
        health = None

        def degraded() -> bool:
            nonlocal health
            health = _health(hub)
            return health["status"] != "ok"

        wait_until(degraded, 2.5)
        assert health["status"] == "degraded" and "url downloads" in health["error"], health
        worker.join(timeout=30)
        worker2.join(timeout=30)
        assert _health(hub)["status"] == "ok"


def test_an_allow_listed_host_name_opens_only_the_web_ports():
    policy = FetchPolicy(allow=("localhost", "images.internal:8080"))
    assert policy.host_allowed("localhost", 80) and policy.host_allowed("localhost", 443)
    assert not policy.host_allowed("localhost", 6379) and not policy.host_allowed("localhost", 22)
    assert policy.host_allowed("images.internal", 8080) and not policy.host_allowed("images.internal", 80)


def test_an_allow_listed_cidr_opens_only_the_web_ports_unless_it_names_one():
    import ipaddress

    policy = FetchPolicy(allow=("10.0.0.0/8", "192.168.1.0/24:8080", "[fd00::1]:9000", "fd00::/16"))
    ten, home, v6 = (ipaddress.ip_address(a) for a in ("10.1.2.3", "192.168.1.7", "fd00::1"))
    assert policy.address_allowed(ten, 80) and policy.address_allowed(ten, 443)
    assert not policy.address_allowed(ten, 6379) and not policy.address_allowed(ten, 22)
    assert policy.address_allowed(home, 8080) and not policy.address_allowed(home, 80)
    assert policy.address_allowed(v6, 9000) and policy.address_allowed(v6, 443)
    assert not policy.address_allowed(v6, 6379)


def test_an_allow_listed_cidr_does_not_reach_another_port_of_its_hosts(slow_server):
    """127.0.0.0/8 is allow-listed (for a web server on it); a url to another port is refused
    before connecting (it used to open every port of every address in the range)."""
    policy = FetchPolicy(allow=("127.0.0.0/8",), total_timeout_s=1.0)
    with pytest.raises(ApiError) as err:
        fetch(f"http://127.0.0.1:{slow_server.port}/a.jpg", policy)
    assert err.value.code == errors.URL_DOWNLOAD_FAILED
    assert slow_server.connections == 0


def test_an_allow_listed_host_name_does_not_reach_another_port_of_it(slow_server):
    """localhost is allow-listed (for its web server); a url to another port of it is refused."""
    policy = FetchPolicy(allow=("localhost",), total_timeout_s=1.0)
    with pytest.raises(ApiError) as err:
        fetch(f"http://localhost:{slow_server.port}/a.jpg", policy)
    assert err.value.code == errors.URL_DOWNLOAD_FAILED
    assert slow_server.connections == 0


def _sign_other(hub) -> str:
    from edge.core.signature import sign

    return sign(hub.other_appid, hub.other_secret_id, hub.other_secret_key)


def _health(hub) -> dict:
    import requests

    return requests.get(f"{hub.url}/health", timeout=5).json()
