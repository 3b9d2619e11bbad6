"""CloudClient: typed errors, bounded retries on unavailability only, circuit breaker, timeouts
(against the real hub and a real misbehaving loopback server)."""

from __future__ import annotations

import json
import time

import pytest

from edge.api.client import CloudApiError, CloudClient, CloudUnavailable
from tests.conftest import free_port
from tests.support.loopback import QuietHandler, serving


class _Flaky(QuietHandler):
    mode = "503"
    hits = 0

    def do_POST(self):  # noqa: N802
        type(self).hits += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "sleep":
            time.sleep(1.0)
        if self.mode == "ok":
            status, body = 200, json.dumps({"data": {"group_ids": ["g"]}, "code": 0, "message": "OK"}).encode()
        elif self.mode == "html":
            status, body = 200, b"<html>gateway error</html>"
        elif self.mode == "internal":  # how the hub answers a bug: HTTP 200, code 213
            status, body = 200, json.dumps({"data": {}, "code": 213, "message": "internal error"}).encode()
        else:
            status, body = 503, json.dumps({"data": {}, "code": 3, "message": "upstream down"}).encode()
        self.reply(status, body)


@pytest.fixture
def flaky():
    _Flaky.hits, _Flaky.mode = 0, "503"
    with serving(_Flaky) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Flaky


def test_api_error_codes_come_back_typed(hub_client):
    with pytest.raises(CloudApiError) as info:
        hub_client.getinfo("nobody-at-all")
    assert info.value.code == -1303 and "does not exist" in info.value.message


def test_every_call_is_signed_and_succeeds(hub_client):
    assert isinstance(hub_client.getgroupids()["group_ids"], list)


def test_wrong_key_is_an_api_error_not_unavailability(hub_server):
    client = CloudClient(hub_server.url, hub_server.appid, hub_server.secret_id, "wrong", retries=3)
    with pytest.raises(CloudApiError) as info:
        client.getgroupids()
    assert info.value.code == 14 and client.breaker_state == "closed"
    client.close()


def test_refused_connection_is_unavailable_after_bounded_retries():
    client = CloudClient(f"http://127.0.0.1:{free_port()}", "1", "k", "s", retries=2, breaker_failures=10)
    with pytest.raises(CloudUnavailable):
        client.getgroupids()
    client.close()


# An HTTP 5xx, or HTTP 200 with code 213 (how the hub answers a bug): retried, then unavailable.
@pytest.mark.parametrize(("mode", "retries", "match", "hits"), [("503", 2, None, 3), ("internal", 1, "code 213", 2)],
                         ids=["http_5xx", "internal_error_code"])
def test_server_trouble_is_retried_then_unavailable(flaky, mode, retries, match, hits):
    url, handler = flaky
    handler.mode = mode
    client = CloudClient(url, "1", "k", "s", retries=retries, breaker_failures=10)
    with pytest.raises(CloudUnavailable, match=match):
        client.getgroupids()
    assert handler.hits == hits
    client.close()


def test_non_json_answer_is_unavailable(flaky):
    url, handler = flaky
    handler.mode = "html"
    client = CloudClient(url, "1", "k", "s", retries=0)
    with pytest.raises(CloudUnavailable):
        client.getgroupids()
    client.close()


def test_timeout_is_unavailable(flaky):
    url, handler = flaky
    handler.mode = "sleep"
    client = CloudClient(url, "1", "k", "s", timeout=0.2, retries=0)
    with pytest.raises(CloudUnavailable):
        client.getgroupids()
    client.close()


def test_breaker_opens_fails_fast_then_lets_one_probe_through(flaky):
    url, handler = flaky
    client = CloudClient(url, "1", "k", "s", retries=0, breaker_failures=3, breaker_reset_s=0.3)
    for _ in range(3):
        with pytest.raises(CloudUnavailable):
            client.getgroupids()
    assert client.breaker_state == "open"
    hits = handler.hits
    with pytest.raises(CloudUnavailable, match="circuit open"):
        client.getgroupids()
    assert handler.hits == hits  # failed fast, nothing sent
    time.sleep(0.35)
    assert client.breaker_state == "half_open"
    handler.mode = "ok"
    assert client.getgroupids() == {"group_ids": ["g"]}
    assert client.breaker_state == "closed"
    client.close()


def test_failed_probe_reopens_the_breaker(flaky):
    url, handler = flaky
    client = CloudClient(url, "1", "k", "s", retries=0, breaker_failures=1, breaker_reset_s=0.2)
    with pytest.raises(CloudUnavailable):
        client.getgroupids()
    time.sleep(0.25)
    with pytest.raises(CloudUnavailable):
        client.getgroupids()  # the probe, which fails
    assert client.breaker_state == "open"
    client.close()


class _Dribbling(QuietHandler):
    """A hub that answers a byte at a time, each well within the read timeout, for a minute;
    or, `huge`, an answer of 40 MiB at once."""

    huge = False

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.huge:
            self.reply(200, b" " * (40 << 20))
            return
        body = json.dumps({"data": {"ismatch": True}, "code": 0, "message": "OK"}).encode().ljust(600)
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            for i in range(len(body)):
                self.wfile.write(body[i:i + 1])
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the client gave up


def test_the_cloud_fallback_gives_up_at_its_deadline_and_a_huge_answer_is_cut_off():
    """The timeout bounded each read, not the answer: a hub answering a byte at a time held a
    door's cloud fallback (and its main loop) for as long as it liked. `verify` now has its whole
    answer within twice the timeout, or none; no answer is read past 32 MiB."""
    _Dribbling.huge = False
    with serving(_Dribbling) as server:
        client = CloudClient(f"http://127.0.0.1:{server.server_address[1]}", "a", "b", "c", timeout=1.0, retries=0)
        t0 = time.monotonic()
        with pytest.raises(CloudUnavailable, match="deadline"):
            client.verify("ben", b"jpeg")
        assert time.monotonic() - t0 < 10  # the dribble lasts a minute
        _Dribbling.huge = True
        with pytest.raises(CloudUnavailable, match="larger than"):
            client.getgroupids()
        client.close()


class _DribblingHeaders(QuietHandler):
    """A hub whose status line and headers come a byte every 0.1 s, for a minute."""

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-Slow-%d: %s\r\n" % (i, b"x" * 40) for i in range(20))
        try:
            for i in range(len(head)):
                self.wfile.write(head[i:i + 1])
                self.wfile.flush()
                time.sleep(0.1)
        except OSError:
            pass  # the client gave up


@pytest.mark.parametrize("call,deadline", [
    (lambda c: c.verify("ben", b"jpeg"), 2.0),  # the cloud fallback: twice the timeout
    (lambda c: c.sync(0, "fp"), 1.0),  # SYNC_DEADLINE_S, set to 1 s here
    (lambda c: c.uploadlog("door-1", "[]"), 4.0),  # at least DEADLINE_TIMEOUTS x the timeout
    (lambda c: c.packs(), 1.0),  # one timeout: a start's check of the hub
    (lambda c: c.getgroupids(), 4.0),  # any call: DEADLINE_TIMEOUTS x the timeout
])
def test_an_answer_whose_headers_come_a_byte_at_a_time_gives_up_at_its_deadline(monkeypatch, call, deadline):
    """The deadline was checked while the body was read, never while the headers came: a hub
    (or a man in the middle) trickling its headers held the cloud fallback (the door's main
    loop: the watchdog killed the daemon), a sync for ever, and the start's check of the hub
    (the daemon never came up). uploadlog, packs and packfile had no deadline at all. Every
    attempt keeps to one now, over its whole exchange."""
    import edge.api.client as client_module

    monkeypatch.setattr(client_module, "SYNC_DEADLINE_S", 1.0)
    monkeypatch.setattr(client_module, "UPLOAD_DEADLINE_S", 1.0)
    with serving(_DribblingHeaders) as server:
        client = CloudClient(f"http://127.0.0.1:{server.server_address[1]}", "a", "b", "c", timeout=1.0, retries=0)
        t0 = time.monotonic()
        with pytest.raises(CloudUnavailable, match="timeout"):
            call(client)
        assert time.monotonic() - t0 < deadline + 1.5  # the trickle lasts 90 s
        client.close()


def test_a_sync_page_coming_a_byte_at_a_time_gives_up_at_its_deadline(monkeypatch):
    """The sync thread waited as long as a hub (or the path to it) dribbled its answer, its
    status "ok" all along: a sync page now comes whole within SYNC_DEADLINE_S (here 1 s)."""
    import edge.api.client as client_module

    monkeypatch.setattr(client_module, "SYNC_DEADLINE_S", 1.0)
    _Dribbling.huge = False
    with serving(_Dribbling) as server:
        client = CloudClient(f"http://127.0.0.1:{server.server_address[1]}", "a", "b", "c", timeout=1.0, retries=0)
        t0 = time.monotonic()
        with pytest.raises(CloudUnavailable, match="deadline"):
            client.sync(0, "fp")
        assert time.monotonic() - t0 < 10  # the dribble lasts a minute
        client.close()


def test_a_sync_answer_that_would_swell_the_edge_is_cut_off():
    """31 KiB of gzip, 31 MiB of `[],` once inflated: under the 32 MiB cap, so it was read and
    parsed, and the daemon grew by 846 MB (past its unit's MemoryMax: killed, and again at the
    next sync). What an edge asks for is capped by what it can be: a sync page at 8 MiB."""
    import gzip

    from edge.api.client import MAX_ANSWER_BYTES_OF

    head = b'{"code":0,"message":"OK","data":{"cursor":1,"has_more":false,"changes":['
    inflated = head + b"[]," * ((10 << 20) // 3) + b"[]]}}"
    body = gzip.compress(inflated, 9)
    assert len(body) < 1 << 20 < MAX_ANSWER_BYTES_OF["sync"] < len(inflated)

    class Bomb(QuietHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.reply(200, body, {"Content-Type": "application/json", "Content-Encoding": "gzip"})

    with serving(Bomb) as server:
        client = CloudClient(f"http://127.0.0.1:{server.server_address[1]}", "a", "b", "c", timeout=5.0, retries=0)
        with pytest.raises(CloudUnavailable, match="larger than"):
            client.sync(0, "fp")
        client.close()
    assert json.loads(inflated)["data"]["cursor"] == 1  # a well-formed answer, only too big
