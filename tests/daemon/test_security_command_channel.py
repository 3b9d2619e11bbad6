"""Issue 24 (hardening, round two) items 3 and 6 against a real edge daemon and a real
mosquitto: one crafted message must not silence the door's commands (nor any exception in a
handler on paho's network thread, and a loop that ends or sticks anyway shows in health and is
restarted), and a tampered copy of a sniffed command must not burn the genuine command's
single-use signature."""

from __future__ import annotations

import json
import logging
import threading

import httpx
import pytest

from edge.daemon.config import MqttSettings
from edge.daemon.mqtt import MqttPublisher
from edge.daemon.outbox import Outbox
from tests.conftest import free_port, wait_until
from tests.support.broker import DaemonProc, broker_with_clients, edge_command, mqtt_client, write_edge_config

DEVICE = "door-chan"
TOPIC = f"test/{DEVICE}/cmd/verify"


class NoHub:  # a [hub] nobody answers at; the local API and commands take EDGE_API, not its key
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDchannel", "h" * 32


def _signed(person_id: str, **fields) -> dict:
    return edge_command("verify", person_id=person_id, **fields)


@pytest.fixture(scope="module")
def door(tmp_path_factory, models_dir):
    tmp = tmp_path_factory.mktemp("chan")
    with broker_with_clients(tmp, f"test/{DEVICE}/#") as (broker, sub, pub):
        port = free_port()
        cfg = write_edge_config(tmp / "edge.toml", device=DEVICE, camera=f"files:{tmp}/none/*", broker=broker,
                                hub=NoHub, storage=tmp / "data", api_port=port)
        daemon = DaemonProc(cfg, port, tmp / "daemon.log").start()
        try:
            daemon.wait_health(lambda h: h["mqtt"]["connected"], 60)
            yield daemon, sub, pub, tmp / "daemon.log"
        finally:
            daemon.terminate()


def _claimed(sub, request_id: str) -> list[dict]:
    return [e for e in sub.json("/event") if (e.get("claim") or {}).get("request_id") == request_id]


def _publish(pub, payload: bytes | str) -> None:
    pub.publish(TOPIC, payload, qos=1).wait_for_publish(5)


def test_a_deeply_nested_command_does_not_silence_the_commands_that_follow(door):
    """`[`x2000 + `]`x2000 raised RecursionError in json.loads on paho's network thread, which
    died: no later command was applied and /health still said ok."""
    daemon, sub, pub, log = door
    _publish(pub, "[" * 2000 + "]" * 2000)
    _publish(pub, '{"person_id": ' + "[" * 2000 + "]" * 2000 + "}")
    _publish(pub, _nested_object(3000))
    _publish(pub, json.dumps(_signed("after-nesting", request_id="after-nesting", timeout_s=0.5)))
    assert sub.wait_for(lambda: _claimed(sub, "after-nesting"), 20), "the command after the nested ones was lost"
    health = httpx.get(f"http://127.0.0.1:{daemon.api_port}/health", timeout=10).json()
    assert health["mqtt"]["connected"], health
    # refused cleanly before any handler: the loop never died, no handler failed
    assert health["mqtt"]["loop"] == {"status": "ok", "reason": "", "restarts": 0, "handler_errors": 0}, health
    assert "RecursionError" not in log.read_text()


def _nested_object(depth: int) -> str:
    text = '{"a":' * depth + "1" + "}" * depth
    return text if len(text) <= 4096 else '{"a":' * 800 + "1" + "}" * 800


def test_a_tampered_copy_of_a_command_does_not_burn_the_genuine_ones_signature(door):
    """A sniffed command republished with another person_id (or a field off its schema) is
    refused, and the genuine command with that same signature is applied afterwards."""
    daemon, sub, pub, log = door
    genuine = _signed("bob", request_id="genuine", timeout_s=0.5)
    _publish(pub, json.dumps({**genuine, "person_id": "mallory", "request_id": "tampered"}))
    _publish(pub, json.dumps({**genuine, "request_id": "tampered-timeout", "timeout_s": "forever"}))
    _publish(pub, json.dumps({**genuine, "request_id": ["tampered-type"]}))
    # not covered by the signature, and once raised OverflowError in Claims.open after the
    # signature was used up
    _publish(pub, json.dumps({**genuine, "request_id": "tampered-huge", "timeout_s": 10**400}))
    _publish(pub, json.dumps(genuine))
    assert sub.wait_for(lambda: _claimed(sub, "genuine"), 20), "the genuine command was refused"
    assert not _claimed(sub, "tampered") and not _claimed(sub, "tampered-timeout")
    assert _claimed(sub, "genuine")[0]["claim"]["person_id"] == "bob"
    # and the genuine one is still single-use
    _publish(pub, json.dumps({**genuine}))
    metrics = lambda: httpx.get(f"http://127.0.0.1:{daemon.api_port}/metrics", timeout=10).text  # noqa: E731
    assert wait_until(lambda: _count(metrics(), "signature") >= 2, 10)
    assert len(_claimed(sub, "genuine")) == 1
    assert genuine["authorization"] not in log.read_text()


def _count(metrics: str, result: str) -> float:
    line = [x for x in metrics.splitlines()
            if x.startswith(f'edge_commands_total{{command="verify",result="{result}"}}')]
    return float(line[0].split()[-1]) if line else 0.0


# -- the transport alone (a real mosquitto): handlers that raise, a loop that ends or sticks ----

SECRET = "AUTHsecretDoNotLog"


class _KillLoop(BaseException):
    """Not an Exception: no handler guard catches it, so it ends paho's network thread the way
    the RecursionError once did (paho re-raises what its callbacks raise)."""


@pytest.fixture
def transport(mosquitto, tmp_path, monkeypatch):
    """An MqttPublisher on a real broker whose command handler records what it gets and, by
    person_id, raises (`boom`), ends the network thread (`die`) or blocks (`hang`); and a paho
    client publishing commands to it."""
    got: list[str] = []
    release = threading.Event()
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # `die` is meant to end a thread

    def on_command(name: str, payload: dict) -> None:
        who = payload.get("person_id")
        if who == "boom":
            raise RuntimeError(f"handler bug quoting the payload {payload}")
        if who == "die":
            raise _KillLoop()
        if who == "hang":
            release.wait(30)  # every wait has a deadline
        got.append(who)

    events = MqttPublisher(MqttSettings(host=mosquitto.host, port=mosquitto.port, prefix="loop"), "door-loop",
                           Outbox(tmp_path / "outbox.db"), on_command=on_command)
    events.restarted_shown_s = 5.0
    events.stuck_after_s = 1.0
    events.start()

    def send(person_id: str) -> None:
        payload = json.dumps({"person_id": person_id, "authorization": SECRET})
        pub.publish("loop/door-loop/cmd/verify", payload, qos=1).wait_for_publish(5)

    try:
        with mqtt_client(mosquitto) as pub:
            assert wait_until(lambda: events.connected, 15)
            # connected is not subscribed yet: commands until one arrives
            assert wait_until(lambda: send("ready") or "ready" in got, 15, every=0.2)
            got.clear()
            yield events, send, got, release
    finally:
        release.set()
        events.stop()


def test_a_handler_that_raises_leaves_the_network_loop_alive(transport, caplog):
    events, send, got, _ = transport
    with caplog.at_level(logging.WARNING):
        send("boom")
        send("after-boom")
        assert wait_until(lambda: "after-boom" in got, 10), got
    health = events.loop_health()
    assert (health["status"], health["handler_errors"], health["restarts"]) == ("ok", 1, 0)
    assert "RuntimeError" in caplog.text and SECRET not in caplog.text  # type and place, no payload


def test_a_dead_network_loop_shows_in_health_and_is_restarted(transport):
    events, send, got, _ = transport
    send("die")
    # sent until one arrives: while the loop is down (clean session) they are lost
    assert wait_until(lambda: send("after-restart") or "after-restart" in got, 15, every=0.5), got
    health = events.loop_health()
    assert (health["status"], health["restarts"]) == ("restarted", 1), health
    assert "network loop ended" in health["reason"]
    # degraded for restarted_shown_s after the restart, then ok again
    assert wait_until(lambda: events.loop_health()["status"] == "ok", 10)


def test_a_stuck_network_loop_shows_in_health_and_recovers_once_released(transport):
    events, send, got, release = transport
    send("hang")
    assert wait_until(lambda: events.loop_health()["status"] == "stuck", 10)
    assert "on_message" in events.loop_health()["reason"]
    release.set()
    send("after-hang")
    assert wait_until(lambda: got[-2:] == ["hang", "after-hang"], 10), got
    assert events.loop_health()["status"] == "ok"


def test_json_depth_counts_nesting_outside_strings():
    from edge.daemon.mqtt import json_depth

    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'{"a": "\\\"[[["}') == 1
    assert json_depth(b"[" * 2000 + b"]" * 2000) == 2000


@pytest.mark.parametrize("status", ["dead", "stuck", "restarted"])
def test_health_is_degraded_with_the_reason_while_the_network_loop_is_not_ok(status):
    """What /health and the state message make of MqttPublisher.loop_health() (the daemon's
    daemon_state), checked against the published state schema."""
    from jsonschema import Draft202012Validator

    from edge.core.matcher import Gallery, Thresholds
    from edge.daemon.health import DaemonSnapshot, daemon_state
    from edge.schemas import schema

    def state(loop: dict) -> dict:
        snap = DaemonSnapshot(
            device="door", uptime_s=1.0, camera={"status": "ok", "frames": 0, "bad_frames": 0, "failures": 0,
                                                 "last_error": ""},
            sync={}, threads={}, stopping=False, outbox_sender=True, mqtt_loop=loop, mqtt_connected=True,
            outbox_depth=0, outbox_rejected=0, outbox={"writable": True, "held_in_memory": 0, "dropped": 0},
            gallery=Gallery((), Thresholds(0.5, 0.3), version="empty"), identify_groups=[], breaker="disabled",
            decisions=0, pending=0, precision="int8", fingerprint="0" * 16, thresholds=Thresholds(0.5, 0.3),
            identify_rate_per="approach", identify_first_share=0.5, verify_rate_per="claim", liveness={},
            claims={"max_refusals": 5, "locked_out": 0})
        return daemon_state(snap)

    ok = state({"status": "ok", "reason": "", "restarts": 0, "handler_errors": 0})
    bad = state({"status": status, "reason": "paho's network loop has ended", "restarts": 1, "handler_errors": 0})
    assert (ok["status"], bad["status"]) == ("ok", "degraded")
    assert bad["mqtt"]["loop"]["reason"] == "paho's network loop has ended"
    validator = Draft202012Validator(schema("state"))
    assert [e.message for e in validator.iter_errors(bad) if "mqtt" in list(e.absolute_path)] == []
