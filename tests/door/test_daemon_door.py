"""The door in a real daemon run: real models on real photos (files: camera), a real hub on
loopback, a real mosquitto; only the GPIO pins are gpiozero's mock pins (none exist here).

The camera shows a stranger (LFW, not enrolled), a scene, then Ben Afflek (enrolled, group
staff). The relay pin rises exactly once, for him, and falls again after unlock_s with no frame
left (the door ticks without frames); the grant arrives over MQTT as a door event pointing at
his decision, the stranger gets no grant, and the retained door state says locked at the end.
Then a remote unlock: an unsigned cmd/unlock moves nothing, a signed one opens once.
"""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from tests.conftest import free_port, wait_until
from tests.support.broker import edge_command, enrol_five, mqtt_client, write_edge_config
from tests.support.hub import start_hub

RELAY = 5
MEMBER = "five_celebrity/Ben_Afflek/val_1.jpg"
STRANGER = "lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
SCENE = "nonface/skimage_coffee.png"


@pytest.fixture
def mock_pins():
    from gpiozero import Device
    from gpiozero.pins.mock import MockFactory

    before = Device.pin_factory
    Device.pin_factory = MockFactory()  # what GPIOZERO_PIN_FACTORY=mock does in a process
    yield Device.pin_factory
    Device.pin_factory.reset()
    Device.pin_factory = before


def rises(pin) -> int:
    states = [s.state for s in pin.states]
    return sum(1 for a, b in zip(states, states[1:]) if b and not a)


def test_the_relay_opens_for_an_enrolled_person_and_not_for_a_stranger(
        tmp_path, faces_dir, mosquitto, subscribe, mock_pins):
    from edge.daemon.config import load
    from edge.daemon.main import Daemon

    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(faces_dir / STRANGER, frames / "00_stranger.jpg")
    shutil.copy(faces_dir / SCENE, frames / "01_scene.png")
    shutil.copy(faces_dir / MEMBER, frames / "02_ben_afflek.jpg")
    sub = subscribe("test/door-io/#")
    with start_hub(tmp_path / "hub") as hub:
        enrol_five(hub.client(timeout=30.0, retries=0), faces_dir)
        cfg = write_edge_config(
            tmp_path / "edge.toml", device="door-io", camera=f"files:{frames}/*", broker=mosquitto, hub=hub,
            storage=tmp_path / "data", api_port=free_port(), rate=2,
            sections={"identify": {"groups": ["staff"]}, "tracker": {"max_missed": 0},
                      "door": {"backend": "gpio", "relay_pin": RELAY, "unlock_s": 2, "max_unlock_s": 5,
                               "groups": ["staff"], "bounce_s": 0, "remote_unlock": True}})
        daemon = Daemon(load(cfg))
        daemon.start()
        # the door's switches at rest: the contact closed (door shut), the lid shut (inputs are
        # pulled up: a switch closed to ground reads low)
        for pin in (27, 23):
            mock_pins.pin(pin).drive_low()
        relay = mock_pins.pin(RELAY)
        assert not relay.state  # started locked
        # written down for `door release`, which the unit runs after any exit (edge.door.release)
        assert json.loads((tmp_path / "data" / "door-relay.json").read_text()) == {
            "pin": RELAY, "active_high": True, "locked_level": False, "pin_factory": ""}
        loop = threading.Thread(target=daemon.loop, daemon=True)
        loop.start()
        try:
            assert sub.wait_for(lambda: any(e.get("kind") == "grant" for e in sub.json("/door/main/event")), 90)
            assert rises(relay) == 1
            decisions = {e["event_id"]: e for e in sub.json("/door-io/event")}
            grant = next(e for e in sub.json("/door/main/event") if e["kind"] == "grant")
            assert grant["person_id"] == "ben_afflek" and grant["reason"] == "granted"
            assert decisions[grant["decision_event_id"]]["decision"] == "accept"
            # no frame left: the loop's ticks relock
            assert wait_until(lambda: daemon.camera.state.status == "ended" and not relay.state, 30)
            assert wait_until(lambda: sub.json("/door/main/state")
                              and sub.json("/door/main/state")[-1]["state"] == "locked", 10), \
                [(t, p[:300]) for t, p, _ in sub.messages if "/door/" in t]
            health = daemon.state()
            assert health["door"]["state"] == "locked" and health["door"]["backend"]["name"] == "gpio"
            assert rises(relay) == 1
            _remote_unlock(mosquitto, sub, relay, daemon)
        finally:
            daemon.stop_event.set()
            loop.join(timeout=10)
            daemon.shutdown()
    stranger = [e for e in decisions.values() if e["decision"] != "accept"]
    assert stranger, "the stranger was decided too"
    assert not [e for e in sub.json("/door/main/event")
                if e["kind"] == "grant" and e.get("decision_event_id") in {s["event_id"] for s in stranger}]
    assert rises(relay) == 2 and not relay.state  # his, the signed remote unlock; locked after shutdown


def _remote_unlock(broker, sub, relay, daemon) -> None:
    import json

    with mqtt_client(broker) as pub:
        topic = "test/door-io/cmd/unlock"
        pub.publish(topic, json.dumps({"door": "main"}), qos=1).wait_for_publish(5)
        signed = edge_command("unlock", door="main")  # the edge's own key, as for every command
        pub.publish(topic, json.dumps(signed), qos=1).wait_for_publish(5)
        assert sub.wait_for(lambda: any(e["kind"] == "grant" and e["reason"] == "remote_unlock"
                                        for e in sub.json("/door/main/event")), 15)
        assert rises(relay) == 2  # the unsigned one moved nothing, the signed one opened once
        pub.publish(topic, json.dumps(signed), qos=1).wait_for_publish(5)  # replayed
        assert wait_until(lambda: daemon.commands.refused.get("signature", 0) >= 2, 10)  # unsigned, replayed
        assert rises(relay) == 2
        assert wait_until(lambda: not relay.state, 10)


def test_osdp_an_enrolled_persons_accept_reaches_the_panel_as_his_synced_card(
        tmp_path, faces_dir, mosquitto, subscribe, mock_pins):
    """`[door] backend = "osdp"`, relay local: the card set on the hub (/face/setcredentials)
    and synced reaches a real libosdp panel over a pty, byte for byte, for Ben's accept only;
    the relay rises once, for him; the panel's link is in the door's health and events."""
    import osdp

    from edge.bench.door_osdp import Panel, Pty
    from edge.core.credentials import Credential, to_bytes
    from edge.daemon.config import load
    from edge.daemon.main import Daemon
    from edge.door.osdp import write_scbk

    card = {"format": "h10304", "facility": 31337, "number": 424242}
    frames = tmp_path / "frames"
    frames.mkdir()
    shutil.copy(faces_dir / STRANGER, frames / "00_stranger.jpg")
    shutil.copy(faces_dir / MEMBER, frames / "01_ben_afflek.jpg")
    key = bytes(range(16))
    write_scbk(tmp_path / "osdp-secrets.toml", key)
    sub = subscribe("test/door-osdp/#")
    pty = Pty.open()
    panel = None
    with start_hub(tmp_path / "hub") as hub:
        client = hub.client(timeout=30.0, retries=0)
        enrol_five(client, faces_dir)
        client.setcredentials("ben_afflek", [card])
        cfg = write_edge_config(
            tmp_path / "edge.toml", device="door-osdp", camera=f"files:{frames}/*", broker=mosquitto, hub=hub,
            storage=tmp_path / "data", api_port=free_port(), rate=2,
            sections={"identify": {"groups": ["staff"]}, "tracker": {"max_missed": 0},
                      "door": {"backend": "osdp", "relay_pin": RELAY, "unlock_s": 2, "max_unlock_s": 5,
                               "groups": ["staff"], "bounce_s": 0,
                               "osdp": {"device": pty.path, "address": 3, "libosdp_log": "error",
                                        "secrets_file": str(tmp_path / "osdp-secrets.toml")}}})
        daemon = Daemon(load(cfg))
        daemon.start()
        for pin in (27, 23):  # the door shut, the lid shut
            mock_pins.pin(pin).drive_low()
        relay = mock_pins.pin(RELAY)
        loop = threading.Thread(target=daemon.loop, daemon=True)
        try:
            panel = Panel(pty, 3, key)
            assert wait_until(lambda: panel.secure() and daemon.state()["door"]["backend"]["link"] == "online", 15)
            assert not relay.state
            loop.start()
            read = panel.events_until(lambda e: e.get("event") == osdp.Event.CardRead, 90)
            assert read is not None
            data, length = to_bytes(Credential.from_json(card))
            assert (read["format"], read["length"], read["data"]) == (osdp.CardFormat.Wiegand, length, data)
            assert sub.wait_for(lambda: any(e.get("kind") == "grant" for e in sub.json("/door/main/event")), 15)
            grant = next(e for e in sub.json("/door/main/event") if e["kind"] == "grant")
            assert grant["person_id"] == "ben_afflek"
            assert wait_until(lambda: daemon.camera.state.status == "ended" and not relay.state, 30)
            assert panel.events_until(lambda e: e.get("event") == osdp.Event.CardRead, 1.0) is None  # one read
            assert rises(relay) == 1
            health = daemon.state()["door"]
            assert health["backend"]["name"] == "osdp" and health["status"] == "ok"
            assert any(e["kind"] == "panel_link" and e["link"] == "online" for e in sub.json("/door/main/event"))
        finally:
            daemon.stop_event.set()
            if loop.is_alive():
                loop.join(timeout=10)
            daemon.shutdown()
            if panel is not None:
                panel.stop()
            pty.close()
    assert not relay.state
