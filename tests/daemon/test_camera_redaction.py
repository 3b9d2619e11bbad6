"""Issue 24 item 7 against a real edge daemon: camera credentials in the two forms the first
redaction missed (a password holding `@`, credentials in the query string or in Dahua-style
path parameters) show nowhere: log, /health, events, retained state, errors."""

from __future__ import annotations

import json
import logging
import threading

import httpx
import numpy as np
import pytest

from edge.daemon.camera import Camera, CameraError, FrameSource, make_source, without_password
from tests.conftest import free_port
from tests.support.broker import EDGE_API, DaemonProc, broker_with_clients, edge_auth, write_edge_config

DEVICE = "door-redact"
# Every secret of the camera url below; none may show anywhere.
SECRETS = ("Super@", "Secret42", "camuser7", "QueryPw77", "Tok99xyz")


class NoHub:  # a [hub] nobody answers at; the local API and commands take EDGE_API, not its key
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDredacttest", "r" * 32


@pytest.fixture(scope="module")
def door(tmp_path_factory, models_dir):
    """A daemon whose camera url has a password with `@` AND credentials in its query string
    (nothing listens there: it fails, is retried, and the failure is shown)."""
    tmp = tmp_path_factory.mktemp("redact")
    with broker_with_clients(tmp, f"test/{DEVICE}/#") as (broker, sub, pub):
        port = free_port()
        camera = (f"opencv:http://admin:Super@Secret42@127.0.0.1:{free_port()}/video.mjpg"
                  "?user=camuser7&Password=QueryPw77&channel=1&TOKEN=Tok99xyz")
        cfg = write_edge_config(tmp / "edge.toml", device=DEVICE, camera=camera, broker=broker, hub=NoHub,
                                storage=tmp / "data", api_port=port)
        daemon = DaemonProc(cfg, port, tmp / "daemon.log").start()
        try:
            daemon.wait_health(lambda h: h["mqtt"]["connected"] and h["camera"]["failures"] >= 1, 60)
            yield daemon, sub, tmp / "daemon.log"
        finally:
            daemon.terminate()


def test_a_password_with_at_and_query_credentials_show_nowhere(door):
    daemon, sub, log = door
    r = httpx.post(f"http://127.0.0.1:{daemon.api_port}/edge/claim",
                   json={"appid": EDGE_API.appid, "person_id": "dave", "timeout_s": 0.5},
                   headers={"Authorization": edge_auth()}, timeout=30)
    assert r.json()["code"] == 0, r.text
    assert sub.wait_for(lambda: any(e.get("claim", {}).get("person_id") == "dave" for e in sub.json("/event")), 20)
    health = httpx.get(f"http://127.0.0.1:{daemon.api_port}/health", timeout=10).text
    assert json.loads(health)["camera"]["failures"] >= 1
    event = [e for e in sub.json("/event") if e["claim"]["person_id"] == "dave"][0]
    shown = {"event": json.dumps(event), "/health": health, "log": log.read_text(),
             "mqtt": b"".join(p for _, p, _ in sub.messages).decode(errors="replace")}
    # still named (host, path, harmless parameters), without any credential
    assert event["camera"].startswith("opencv:http://***@127.0.0.1:")
    assert "password=***&channel=1&token=***" in event["camera"].lower()
    assert "***@127.0.0.1" in shown["log"] and "user=***" in shown["log"]
    assert {where: [s for s in SECRETS if s in text] for where, text in shown.items()} == dict.fromkeys(shown, [])


@pytest.mark.parametrize("url, secrets", [
    ("rtsp://admin:Super@Secret42@10.0.0.5/s", ["Super", "Secret42", "admin"]),
    ("rtsp://admin:pa/ss?w#d@10.0.0.5/s", ["pa/ss", "w#d"]),  # unencoded / ? # in the password
    ("rtsp://10.0.0.5/s?user=admin&pass=p1&PWD=p2&secret=p3&api_key=p4&auth=p5&access_token=p6",
     ["admin", "p1", "p2", "p3", "p4", "p5", "p6"]),
    ("rtsp://10.0.0.5:554/user=admin&password=Pw9&channel=1&stream=0.sdp", ["admin", "Pw9"]),  # Dahua
    ("rtsp://10.0.0.5/s?password=Super@Secret42", ["Super", "Secret42"]),  # an @ in a query value
])
def test_every_form_of_camera_credentials_is_cut_from_errors(url, secrets):
    shown = without_password(f"cannot open opencv source {url!r}; retrying")
    assert [s for s in secrets if s in shown] == []
    assert "10.0.0.5" in shown or "***@" in shown
    # a source spec without its `opencv:` prefix is refused without quoting the password
    with pytest.raises(ValueError, match="unknown camera source") as info:
        make_source(url)
    assert [s for s in secrets if s in str(info.value)] == []


class _DriverQuotingItsUrl(FrameSource):
    """A driver whose errors quote the url it was given (OpenCV and ffmpeg do), on open, read
    and close."""

    URL = "rtsp://admin:Super@Secret42@10.0.0.5/s?token=Tok99xyz"

    def open(self) -> None:
        pass

    def read(self) -> np.ndarray | None:
        raise CameraError(f"stream {self.URL} stalled")

    def close(self) -> None:
        raise RuntimeError(f"cannot release {self.URL}")


def test_a_driver_error_quoting_the_url_is_cut_in_the_state_and_every_log_line(caplog):
    cam = Camera(_DriverQuotingItsUrl(), name=without_password(_DriverQuotingItsUrl.URL), rate=100,
                 retry_initial_s=0.01)
    with caplog.at_level(logging.DEBUG, logger="edge.daemon.camera"):
        assert cam.read(threading.Event(), max_block_s=0.2) is None
    assert cam.state.failures >= 1 and "close failed" in caplog.text
    shown = caplog.text + json.dumps(cam.state.as_dict())
    assert [s for s in SECRETS if s in shown] == [] and "***@10.0.0.5" in shown


@pytest.mark.parametrize("source, secret", [
    ("opencv:rtsp://admin:pa'ss@10.0.0.9:554/stream", "pa'ss"),
    ('opencv:rtsp://admin:p a<s>s"@10.0.0.9/stream', "p a<s>s"),
    ("opencv:http://10.0.0.9/snapshot.cgi?pw=Hunter22&chn=1", "Hunter22"),
])
def test_a_configured_camera_url_is_shown_without_its_password_whatever_it_holds(source, secret):
    """A url alone (the configured source, the camera's name in every event and in /health): its
    userinfo runs to the last `@` whatever it holds; inside messages quotes and spaces end a url,
    and a password holding one was shown whole. `pw=` is a credential too."""
    from edge.daemon.camera import from_settings
    from edge.daemon.config import CameraSettings

    camera = from_settings(CameraSettings(source=source))
    assert secret not in camera.name and "***" in camera.name
