"""MQTT over TLS with username/password against a real mosquitto configured for both."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from edge.daemon.config import MqttSettings
from edge.daemon.decision_event import new_event
from edge.daemon.mqtt import MqttPublisher
from edge.daemon.outbox import Outbox
from tests.conftest import free_port, wait_until
from tests.support.broker import MOSQUITTO


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tls_broker(tmp_path):
    d = tmp_path
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "1", "-subj", "/CN=test-ca", cwd=d)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=localhost", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "1", "-extfile", "ext.cnf", cwd=d)
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "door", "s3cret"], check=True,
                   capture_output=True)
    for f in ("server.key", "passwd"):
        os.chmod(d / f, 0o644)  # mosquitto may run as another user
    port = free_port()
    (d / "m.conf").write_text(
        f"listener {port} 127.0.0.1\ncafile {d}/ca.crt\ncertfile {d}/server.crt\nkeyfile {d}/server.key\n"
        f"allow_anonymous false\npassword_file {d}/passwd\n" + ("user root\n" if os.geteuid() == 0 else ""))
    proc = subprocess.Popen([MOSQUITTO, "-c", str(d / "m.conf")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    assert proc.poll() is None, "mosquitto with TLS did not start"
    yield port, d / "ca.crt"
    proc.terminate()
    proc.wait(5)


def _tls_publisher(tls_broker, tmp_path, password: str) -> MqttPublisher:
    """A started publisher for user "door" on the TLS broker, trusting its CA."""
    port, ca = tls_broker
    s = MqttSettings(host="127.0.0.1", port=port, prefix="t", tls=True, ca_file=str(ca),
                     username="door", password=password, reconnect_max_s=1)
    pub = MqttPublisher(s, "door-tls", Outbox(tmp_path / "o.db"))
    pub.start()
    return pub


def test_events_flow_over_tls_with_the_right_password(tls_broker, tmp_path):
    pub = _tls_publisher(tls_broker, tmp_path, "s3cret")
    try:
        assert wait_until(lambda: pub.connected, 10)
        pub.publish_event(new_event(n=1))
        assert wait_until(lambda: pub.outbox_depth() == 0, 10)  # PUBACK came back over TLS
    finally:
        pub.stop()


def test_a_wrong_password_keeps_events_in_the_outbox(tls_broker, tmp_path):
    pub = _tls_publisher(tls_broker, tmp_path, "wrong")
    try:
        pub.publish_event(new_event(n=1))
        time.sleep(2)
        assert not pub.connected and pub.outbox_depth() == 1
    finally:
        pub.stop(timeout=0.5)
