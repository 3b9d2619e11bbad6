"""The door's MQTT messages against their published schemas, and Home Assistant discovery."""

from __future__ import annotations

import json

from edge.door.interface import DoorInput, InputKind
from edge.schemas import example
from tests.door.support import contact, door, press_exit
from tests.support.broker import schema_errors


def test_the_shipped_examples_conform():
    assert schema_errors("p/dev/door/main/event", json.dumps(example("door-event")).encode()) == []
    assert schema_errors("p/dev/door/main/state", json.dumps(example("door-state")).encode()) == []
    assert schema_errors("p/dev/door/main/event", json.dumps(example("door-event-panel")).encode()) == []
    # the door's topics are checked by the door's schemas, not the device's
    assert schema_errors("p/dev/door/main/state", json.dumps(example("door-event")).encode())


def test_every_event_the_controller_makes_conforms_as_the_daemon_sends_it():
    from edge.daemon.decision_event import new_event

    c, clock, io = door(held_prealarm_s=5, held_open_s=10, exit_stuck_s=5, input_events_max=2)
    c.grant("p", "granted", event_id="e")
    c.deny("q", "not_in_groups", event_id="e")
    contact(c, True)
    c.tick(clock.advance(11))
    contact(c, False)
    press_exit(c)
    c.tick(clock.advance(6))
    press_exit(c, False)
    c.on_input(DoorInput(InputKind.TAMPER, True, clock.now))
    for _ in range(3):
        contact(c, True)
        contact(c, False)
    events = c.take_events()
    kinds = {e["kind"] for e in events}
    assert {"grant", "deny", "door_open", "held_open_prealarm", "held_open", "door_closed", "exit_request",
            "exit_stuck", "exit_released", "tamper", "forced_open", "input_flapping", "door_state"} <= kinds
    for e in events:
        message = new_event(device="dev", **{k: v for k, v in e.items() if v is not None})
        assert schema_errors("p/dev/door/main/event", json.dumps(message).encode()) == [], e["kind"]
    state = {k: v for k, v in new_event(device="dev", **c.snapshot()).items() if k != "event_id"}
    assert schema_errors("p/dev/door/main/state", json.dumps(state).encode()) == []


def test_home_assistant_gets_a_lock_and_three_binary_sensors():
    from edge.daemon.discovery import messages

    msgs = dict(messages("homeassistant", "door-1", lambda leaf: f"edge-verifier/door-1/{leaf}", "main"))
    locks = [json.loads(v) for k, v in msgs.items() if k.startswith("homeassistant/lock/")]
    sensors = [json.loads(v) for k, v in msgs.items() if k.startswith("homeassistant/binary_sensor/")]
    assert len(locks) == 1 and locks[0]["command_topic"] == "edge-verifier/door-1/cmd/unlock"
    assert locks[0]["state_topic"] == "edge-verifier/door-1/door/main/state"
    assert sorted(s["device_class"] for s in sensors) == ["door", "problem", "tamper"]
    assert len(messages("homeassistant", "door-1", lambda leaf: leaf)) == 2  # no door: the two sensors
