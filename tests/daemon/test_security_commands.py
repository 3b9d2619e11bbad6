"""Issue 14 items 5 and 6 against a real edge daemon and a real mosquitto: a camera password
never shows (events, state, /health, log); MQTT commands are signed, single-use, not retained,
follow the API's id rules, are size capped and rate limited."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.conftest import free_port, wait_until
from tests.support.broker import EDGE_API, DaemonProc, broker_with_clients, edge_auth, edge_command, write_edge_config

PASSWORD = "S3cretCamPw"
DEVICE = "door-sec"


class NoHub:  # a [hub] nobody answers at; the local API and commands take EDGE_API, not its key
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDcmdtest", "c" * 32


def _signed(person_id: str, **fields) -> bytes:
    return json.dumps(edge_command("verify", person_id=person_id, **fields)).encode()


@pytest.fixture(scope="module")
def door(tmp_path_factory, models_dir):
    """A daemon whose camera is an http url with a password (nothing listens there), with a
    signed claim left retained on its command topic before it starts."""
    tmp = tmp_path_factory.mktemp("cmd")
    with broker_with_clients(tmp, f"test/{DEVICE}/#") as (broker, sub, pub):
        # Retained: the broker hands it to the daemon when it subscribes (and at every reconnect).
        pub.publish(f"test/{DEVICE}/cmd/verify", _signed("retained", request_id="retained", timeout_s=0.5),
                    qos=1, retain=True).wait_for_publish(5)
        port = free_port()
        camera = f"opencv:http://admin:{PASSWORD}@127.0.0.1:{free_port()}/video.mjpg"
        cfg = write_edge_config(tmp / "edge.toml", device=DEVICE, camera=camera, broker=broker, hub=NoHub,
                                storage=tmp / "data", api_port=port,
                                sections={"mqtt": {"commands_per_s": 0.5, "commands_burst": 3}})
        daemon = DaemonProc(cfg, port, tmp / "daemon.log").start()
        try:
            daemon.wait_health(lambda h: h["mqtt"]["connected"] and h["camera"]["failures"] >= 1, 60)
            time.sleep(1.5)  # a retained claim taken at connect would have timed out by now
            yield daemon, broker, sub, pub, tmp / "daemon.log"
        finally:
            daemon.terminate()


def _events(sub):
    return sub.json("/event")


def test_forged_replayed_retained_oversized_and_log_forging_commands_are_ignored(door):
    daemon, broker, sub, pub, log = door
    topic = f"test/{DEVICE}/cmd/verify"
    # unsigned flood: used to turn every face into a verify against "nobody"
    for _ in range(20):
        pub.publish(topic, json.dumps({"person_id": "nobody", "timeout_s": 0.5}), qos=1).wait_for_publish(5)
    # a signature of the wrong kind (multi-use API header) and one bound to another person
    auth = edge_auth()
    pub.publish(topic, json.dumps({"person_id": "nobody", "timeout_s": 0.5, "authorization": auth}), qos=1)
    other = json.loads(_signed("alice", timeout_s=0.5))
    pub.publish(topic, json.dumps({**other, "person_id": "nobody"}), qos=1)
    # signed, but the id breaks the API's rules: a newline forging a log line, 1 MB
    pub.publish(topic, _signed("eve\n2026-01-01 INFO edge.daemon: decision verify accept eve", timeout_s=0.5), qos=1)
    pub.publish(topic, _signed("x" * 1_000_000, timeout_s=0.5), qos=1).wait_for_publish(5)
    # a good signed claim, then the same message again (replayed by whoever saw it)
    first = _signed("bob", request_id="once", timeout_s=0.5)
    pub.publish(topic, first, qos=1).wait_for_publish(5)
    assert sub.wait_for(lambda: len(_events(sub)) >= 1, 20)
    pub.publish(topic, first, qos=1).wait_for_publish(5)
    time.sleep(2.0)  # anything applied above would have timed out into an event by now
    events = _events(sub)
    assert [(e["claim"]["person_id"], e["claim"]["request_id"]) for e in events] == [("bob", "once")]
    assert events[0]["decision"] == "unknown"
    text = log.read_text()
    assert not any(line.startswith("2026-01-01") for line in text.splitlines())
    assert text.count("MQTT command refused") < 10  # a flood is counted, not logged line by line
    refused = daemon.health()["commands"]["refused"]  # counted where an operator looks
    assert refused.get("signature", 0) >= 3 and refused.get("bad_person_id", 0) >= 1


def test_a_signed_http_claim_with_a_newline_in_the_person_id_is_refused_with_1313(door):
    daemon = door[0]
    r = httpx.post(f"http://127.0.0.1:{daemon.api_port}/edge/claim",
                   json={"appid": EDGE_API.appid, "person_id": "eve\nINFO forged"},
                   headers={"Authorization": edge_auth()}).json()
    assert r["code"] == -1313


def test_the_camera_password_shows_nowhere(door):
    daemon, broker, sub, pub, log = door
    pub.publish(f"test/{DEVICE}/cmd/verify", _signed("carol", timeout_s=0.5), qos=1).wait_for_publish(5)
    assert sub.wait_for(lambda: any(e["claim"]["person_id"] == "carol" for e in _events(sub)), 20)
    health = httpx.get(f"http://127.0.0.1:{daemon.api_port}/health").text
    assert "cannot open" in health or "failed" in health or json.loads(health)["camera"]["failures"]
    event = [e for e in _events(sub) if e["claim"]["person_id"] == "carol"][0]
    assert event["camera"].startswith("opencv:http://") and "127.0.0.1" in event["camera"]
    shown = {"event": json.dumps(event), "/health": health, "log": log.read_text(),
             "mqtt": b"".join(p for _, p, _ in sub.messages).decode(errors="replace")}
    assert "***@127.0.0.1" in shown["log"]  # the camera is still named, without its password
    assert {where: PASSWORD in text for where, text in shown.items()} == dict.fromkeys(shown, False)


def test_valid_commands_beyond_the_rate_limit_are_not_applied(door):
    daemon, broker, sub, pub, log = door
    topic = f"test/{DEVICE}/cmd/verify"
    for i in range(10):
        pub.publish(topic, _signed(f"p{i}", timeout_s=30), qos=1).wait_for_publish(5)

    def limited() -> float:  # the daemon handles them on its own thread: counted a moment later
        metrics = httpx.get(f"http://127.0.0.1:{daemon.api_port}/metrics").text
        lines = [line for line in metrics.splitlines()
                 if line.startswith('edge_commands_total{command="verify",result="rate_limited"}')]
        return float(lines[0].split()[-1]) if lines else 0.0

    assert wait_until(lambda: limited() >= 5, 20), limited()
