"""HTTPS end to end with a private CA made at test time: the hub serves TLS from [server]
tls_cert/tls_key, the edge's client verifies it against [hub] ca_file, and the edge's local API
serves TLS from [api] tls_cert/tls_key. Face photos and signatures never cross in the clear."""

from __future__ import annotations

import json
import socket
import ssl
import time
import urllib.request

import pytest

from edge.api.client import CloudClient, CloudUnavailable
from tests.conftest import free_port, wait_until
from tests.support.broker import DaemonProc, write_edge_config
from tests.support.hub import answer_to, start_hub
from tests.support.tls import issue


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory, tls_files, models_dir):
    tmp = tmp_path_factory.mktemp("tls-hub")
    with start_hub(tmp, server={"tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key)}) as hub:
        yield hub


def test_the_hub_serves_https_and_a_client_trusting_the_private_ca_gets_answers(tls_hub, tls_files):
    assert tls_hub.url.startswith("https://")
    with CloudClient(tls_hub.url, tls_hub.appid, tls_hub.secret_id, tls_hub.secret_key, retries=0,
                     ca_file=str(tls_files.ca)) as client:
        assert client.getgroupids() == {"group_ids": []}


def test_a_client_without_the_ca_refuses_the_hub_certificate(tls_hub):
    with CloudClient(tls_hub.url, tls_hub.appid, tls_hub.secret_id, tls_hub.secret_key, retries=0) as client:
        with pytest.raises(CloudUnavailable, match="(?i)certificate|ssl|tls"):
            client.getgroupids()


def test_a_hub_certificate_from_another_ca_is_refused(tmp_path, tls_files, models_dir):
    """A man in the middle with a certificate of his own CA for the same address is refused."""
    rogue = issue(tmp_path / "rogue", name="rogue")
    with start_hub(tmp_path, server={"tls_cert": str(rogue.cert), "tls_key": str(rogue.key)}) as hub:
        with CloudClient(hub.url, hub.appid, hub.secret_id, hub.secret_key, retries=0,
                         ca_file=str(tls_files.ca)) as client:
            with pytest.raises(CloudUnavailable):
                client.getgroupids()


def _plain_http_to(url: str, request: bytes) -> bytes:
    return answer_to(("127.0.0.1", int(url.rsplit(":", 1)[1])), request)


@pytest.mark.parametrize("request_bytes", [
    b"POST /face/getgroupids HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 2\r\n\r\n{}",
    b"GET /health HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    b"POST /face/newperson HTTP/1.1\r\nHost: evil.example\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100_000,
], ids=["api-call", "health", "large-body"])
def test_plain_http_to_the_tls_port_is_told_to_use_https_and_gets_no_face_api_answer(tls_hub, tls_files,
                                                                                     request_bytes):
    t0 = time.monotonic()
    answer = _plain_http_to(tls_hub.url, request_bytes)
    assert time.monotonic() - t0 < 5  # closed at once, not held until a deadline
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:300]
    assert b"https://" in body and b"connection: close" in head.lower()
    assert b'"code"' not in answer and b"evil" not in answer  # not served, nothing echoed
    # the listener still serves TLS clients afterwards
    with urllib.request.urlopen(f"{tls_hub.url}/health", context=ssl.create_default_context(cafile=str(tls_files.ca)),
                                timeout=10) as resp:
        assert json.loads(resp.read())["status"] in ("ok", "degraded")


def test_refused_plain_http_connections_leave_the_connection_cap_free(tmp_path, tls_files, models_dir):
    """Each refused plain-http connection counts against the cap while open and is uncounted
    when it closes: after many of them (and silent ones dropped at the deadline), TLS clients
    still get in under a cap of 3."""
    with start_hub(tmp_path, server={"tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key),
                                     "max_connections": 3, "header_timeout_s": 1,
                                     "address_share": 1.0}) as hub:
        for _ in range(12):
            assert _plain_http_to(hub.url, b"GET /health HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400 ")
        port = int(hub.url.rsplit(":", 1)[1])
        silent = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        try:
            time.sleep(2.0)  # past the header deadline: dropped and uncounted
        finally:
            for sock in silent:
                sock.close()
        context = ssl.create_default_context(cafile=str(tls_files.ca))
        for _ in range(3):
            with urllib.request.urlopen(f"{hub.url}/health", context=context, timeout=10) as resp:
                assert resp.status == 200


@pytest.mark.parametrize("role", ["hub", "edge"])
def test_a_tls_key_readable_by_others_is_refused_at_start(tmp_path, tls_files, role):
    import shutil

    from edge.core.settings import ConfigError
    from edge.daemon import config as edge_config
    from edge.hub import config as hub_config

    key = tmp_path / "open.key"
    shutil.copy(tls_files.key, key)
    key.chmod(0o644)
    section = "server" if role == "hub" else "api"
    cfg = tmp_path / f"{role}.toml"
    cfg.write_text(f'[{section}]\ntls_cert = "{tls_files.cert}"\ntls_key = "{key}"\n')
    with pytest.raises(ConfigError, match=f"{section}.*group/others"):
        (hub_config if role == "hub" else edge_config).load(cfg)
    key.chmod(0o600)
    (hub_config if role == "hub" else edge_config).load(cfg)


def test_the_edge_syncs_from_an_https_hub_with_its_ca_file_and_serves_its_api_over_https(
        tls_hub, tls_files, tmp_path):
    port = free_port()
    cfg = write_edge_config(
        tmp_path / "edge.toml", device="door-tls", camera=f"files:{tmp_path}/none/*", broker=None, hub=tls_hub,
        storage=tmp_path / "data", api_port=port, sections={"hub": {"ca_file": str(tls_files.ca)},
                  "api": {"tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key)}},
    )
    daemon = DaemonProc(cfg, port, tmp_path / "d.log").start()
    trusting = ssl.create_default_context(cafile=str(tls_files.ca))
    try:
        health = None

        def synced() -> bool:
            nonlocal health
            assert daemon.proc.poll() is None, (tmp_path / "d.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", timeout=2, context=trusting) as r:
                    health = json.loads(r.read())
            except OSError:
                health = None
            return bool(health and health["sync"].get("status") == "ok")

        wait_until(synced, 90, every=0.2)
        assert health and health["sync"]["status"] == "ok", (health, (tmp_path / "d.log").read_text()[-3000:])
        assert daemon.health() is None  # the local API does not answer plain http
    finally:
        assert daemon.terminate() == 0

