"""The gpio backend on gpiozero's mock pins (no GPIO on this machine): the test drives the input
pins as the switches would and reads the relay pin's level."""

from __future__ import annotations

import pytest

from edge.door.backends.gpio import GpioDoor
from edge.door.controller import DoorController, DoorState, DoorTiming, relay_level
from edge.door.settings import DoorSettings
from tests.door.support import Clock

RELAY, CONTACT, EXIT, TAMPER = 17, 27, 22, 23


@pytest.fixture
def pins():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.reset()


def start(pins, **settings):
    s = DoorSettings(backend="gpio", bounce_s=0, **settings)
    clock = Clock()
    c = DoorController(GpioDoor.from_settings(s, pin_factory=pins), lock_type=s.lock_type,
                       timing=DoorTiming.from_settings(s), clock=clock)
    # the switches as wired at rest: NC contact closed (door shut), tamper closed (lid shut)
    pins.pin(CONTACT).drive_low()
    pins.pin(TAMPER).drive_low()
    c.start()
    return c, clock


def relay_high(pins) -> bool:
    return bool(pins.pin(RELAY).state)


@pytest.mark.parametrize("active_high", [True, False])
@pytest.mark.parametrize("lock_type", ["fail-secure", "fail-safe"])
def test_relay_pin_level_follows_lock_type_and_active_level(pins, active_high, lock_type):
    c, clock = start(pins, relay_active_high=active_high, lock_type=lock_type)
    locked_level = relay_level(False, lock_type) == active_high
    assert relay_high(pins) == locked_level
    c.grant("p", "granted")
    assert relay_high(pins) != locked_level
    c.tick(clock.advance(3.1))
    assert relay_high(pins) == locked_level
    c.close()


def test_relay_starts_at_the_locked_level_before_any_input(pins):
    s = DoorSettings(backend="gpio", lock_type="fail-safe", relay_active_high=True)
    io = GpioDoor.from_settings(s, pin_factory=pins)
    assert pins.pin(RELAY).state  # fail-safe: energised = locked, from the first instant
    assert pins.pin(RELAY).states[0].state == pins.pin(RELAY).state or len(pins.pin(RELAY).states) <= 2
    io.close()


def test_nc_contact_opening_relocks_and_a_cut_wire_reads_as_open(pins):
    c, clock = start(pins)
    c.grant("p", "granted")
    assert relay_high(pins)
    pins.pin(CONTACT).drive_high()  # NC loop opens: the door opened
    assert c.state is DoorState.OPEN and not relay_high(pins)
    pins.pin(CONTACT).drive_low()
    assert c.state is DoorState.LOCKED
    clock.advance(10)
    pins.pin(CONTACT).drive_high()  # the wire cut (or the door forced): same reading, an alarm
    assert c.state is DoorState.FORCED
    c.close()


def test_no_contact_wiring(pins):
    c, clock = start(pins, contact_closed_when_door="open")
    # NO switch: closed (low) = door open. The fixture drove it low: the door was open at start.
    assert c.state is DoorState.OPEN and not c.snapshot()["alarm"]
    pins.pin(CONTACT).drive_high()
    assert c.state is DoorState.LOCKED
    c.close()


def test_exit_button_and_tamper_pins(pins):
    c, clock = start(pins)
    c.take_events()
    pins.pin(EXIT).drive_low()  # pressed (to ground)
    assert relay_high(pins)
    pins.pin(EXIT).drive_high()
    pins.pin(TAMPER).drive_high()  # the lid opened
    kinds = [e["kind"] for e in c.take_events()]
    assert "exit_request" in kinds and "tamper" in kinds
    assert c.snapshot()["tamper"]
    c.close()


def test_debounce_is_set_on_the_input_pins(pins):
    # gpiozero debounces on the real pin library (lgpio); its mock pins keep the setting only,
    # so the flapping test below (tests/door/test_faults.py) needs the controller's own limit.
    c, clock = start(pins)
    c.close()
    s = DoorSettings(backend="gpio", bounce_s=0.25)
    io = GpioDoor.from_settings(s, pin_factory=pins)
    assert pins.pin(CONTACT).bounce == 0.25 and pins.pin(EXIT).bounce == 0.25
    io.close()


def test_a_flapping_contact_pin_is_rate_limited_never_an_open_relay(pins):
    c, clock = start(pins, input_events_max=4)
    c.take_events()
    for _ in range(50):  # a loose wire: 100 edges, no debounce on mock pins
        pins.pin(CONTACT).drive_high()
        pins.pin(CONTACT).drive_low()
    events = c.take_events()
    assert sum(e["kind"] == "forced_open" for e in events) <= 4
    # every closing cleared a forced alarm, and went past the limit: 50 door_closed events
    assert sum(e["kind"] == "door_closed" for e in events) <= 4
    assert [e["kind"] for e in events].count("input_flapping") == 1
    assert c.forced_count == 50 and not relay_high(pins)
    assert "contact input flapping" in c.health()["faults"]
    c.tick(clock.advance(11))
    assert c.health()["faults"] == []
    cleared = c.take_events()  # the input heard again (said: the fault left /health silently), and
    # the clearing that fell in the muted time, said once
    assert [(e["kind"], e.get("active"), e.get("alarm_cleared"), e.get("after_flapping")) for e in cleared] == \
        [("input_flapping", False, None, None), ("door_closed", None, True, True)]
    c.tick(clock.advance(1))
    assert c.take_events() == []
    c.close()


@pytest.mark.parametrize("how", ["locked_down", "relay_by_panel"])
def test_a_chattering_exit_button_is_muted_where_it_cannot_unlock_too(pins, how):
    """The exit pair shorted 200 times (from outside, or a loose wire): muted behind one
    input_flapping in normal mode, but in locked_down mode and with the panel's relay each
    press was an exit_request event (outbox, MQTT, the signed log) and authorised the next
    opening, so a forced door read as an allowed one."""
    from edge.door.backends.panel import PanelDoor
    from edge.door.controller import DoorMode

    s = DoorSettings(backend="gpio", bounce_s=0, input_events_max=10)
    gpio = GpioDoor.from_settings(s, pin_factory=pins)
    clock = Clock()
    io = PanelDoor(gpio, relay_by_panel=True) if how == "relay_by_panel" else gpio
    c = DoorController(io, timing=DoorTiming.from_settings(s), clock=clock,
                       mode=DoorMode.LOCKED_DOWN if how == "locked_down" else DoorMode.NORMAL)
    pins.pin(CONTACT).drive_low()
    pins.pin(TAMPER).drive_low()
    c.start()
    c.take_events()
    for _ in range(200):
        pins.pin(EXIT).drive_low()  # pressed (pulled up at rest)
        clock.advance(0.02)
        pins.pin(EXIT).drive_high()
        clock.advance(0.02)
    kinds = [e["kind"] for e in c.take_events()]
    assert kinds.count("exit_request") <= 10 and kinds.count("input_flapping") == 1
    pins.pin(CONTACT).drive_high()  # opened during the muted chatter: not authorised by it
    assert [e["kind"] for e in c.take_events()] == ["forced_open"]
    c.close()


def test_pins_in_use_are_a_clear_config_error(pins):
    from edge.core.settings import ConfigError

    s = DoorSettings(backend="gpio")
    first = GpioDoor.from_settings(s, pin_factory=pins)
    with pytest.raises(ConfigError, match="gpio pins could not be opened"):
        GpioDoor.from_settings(s, pin_factory=pins)
    first.close()
    GpioDoor.from_settings(s, pin_factory=pins).close()  # released by close


def test_health_reads_the_relay_pin(pins):
    c, clock = start(pins)
    c.grant("p", "granted")
    h = c.health()
    assert h["backend"]["relay_energised"] is True and h["backend"]["name"] == "gpio"
    assert h["status"] == "ok" and h["state"] == "unlocked"
    c.close()


def test_inputs_not_wired(pins):
    s = DoorSettings(backend="gpio", contact_pin=-1, exit_pin=-1, tamper_pin=-1)
    c = DoorController(GpioDoor.from_settings(s, pin_factory=pins), timing=DoorTiming.from_settings(s))
    c.start()
    assert c.grant("p", "granted") and relay_high(pins)
    assert c.health()["backend"]["pins"] == {"relay": RELAY}
    c.close()


def test_the_lgpio_factory_without_a_gpio_chip_is_a_clear_config_error():
    from edge.core.settings import ConfigError
    from edge.door.backends import make_door_io

    with pytest.raises(ConfigError, match="lgpio"):
        make_door_io(DoorSettings(backend="gpio", pin_factory="lgpio"))
