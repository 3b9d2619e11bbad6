"""Faults: a relay backend that raises, a stuck exit button, a backend missing from the build;
each is a log line, an event and a health fault, never a crash or an open door."""

from __future__ import annotations

import pytest

from edge.door.controller import DoorState
from edge.door.interface import DoorIOError
from tests.door.support import BrokenRelay, contact, door, kinds, press_exit


@pytest.mark.parametrize("exc", [DoorIOError("board not answering"), RuntimeError("a backend bug")])
def test_a_relay_that_raises_keeps_the_door_locked_and_says_so(caplog, exc):
    io = BrokenRelay(exc)
    c, clock, io = door(io)  # starting with a broken relay: no crash
    assert not c.grant("p", "granted")
    assert not io.energised and c.state is DoorState.LOCKED
    events = c.take_events()
    assert [e["kind"] for e in events].count("relay_fault") == 1
    h = c.health()
    assert h["status"] == "degraded" and h["faults"][0].startswith("relay:")
    assert "relay" in caplog.text
    calls = io.calls
    c.tick(clock.advance(1))  # locking is retried on every tick
    assert io.calls > calls
    io.exc = None
    c.tick(clock.advance(1))
    assert "relay_ok" in kinds(c) and c.health()["status"] == "ok"
    assert c.grant("p", "granted") and io.energised  # the decision path works again


def test_a_relay_failing_to_lock_is_retried_until_it_obeys():
    io = BrokenRelay(None)
    c, clock, io = door(io)
    c.grant("p", "granted")
    io.exc = DoorIOError("stuck")
    c.tick(clock.advance(3.1))  # time over: the lock command fails
    assert c.relay_fault and c.snapshot()["locked"]  # what the controller wants, and says it could not
    io.exc = None
    c.tick(clock.advance(0.1))
    assert not io.energised and not c.relay_fault


def test_a_stuck_exit_button_is_ignored_reported_and_cleared_on_release():
    c, clock, io = door(exit_stuck_s=30, unlock_s=3)
    c.take_events()
    press_exit(c)
    assert io.energised
    c.tick(clock.advance(3.1))
    assert not io.energised  # held down does not keep the door open
    c.tick(clock.advance(30))
    assert "exit_stuck" in kinds(c)
    assert "exit button stuck" in c.health()["faults"]
    press_exit(c)  # further presses while stuck: nothing
    assert not io.energised
    clock.advance(20)
    contact(c, True)
    assert c.state is DoorState.FORCED  # a stuck button does not shunt the alarm forever
    contact(c, False)
    press_exit(c, False)
    assert "exit_released" in kinds(c) and c.health()["faults"] == []
    press_exit(c)
    assert io.energised


def test_inputs_that_raise_inside_the_controller_never_reach_the_backend_thread(caplog):
    from edge.door.interface import DoorInput, InputKind

    c, clock, io = door()
    c.on_input(DoorInput(InputKind.CONTACT, "garbage", clock.now))  # type: ignore[arg-type]
    c.on_input(DoorInput("nonsense", True, clock.now))  # type: ignore[arg-type]
    assert not io.energised


def test_osdp_and_wiegand_settings_errors_name_the_key(tmp_path):
    """`[door.osdp]` and `[door.wiegand]` are checked at start: the message names the key."""
    from edge.core.settings import ConfigError, load_settings
    from edge.daemon.config import EdgeSettings
    from edge.door.backends import make_door_io
    from edge.door.settings import DoorSettings

    cases = [({"backend": "osdp"}, "osdp.secrets_file is required"),
             ({"backend": "osdp", "osdp": {"secrets_file": "s", "relay": "both"}}, "door.osdp.relay"),
             ({"backend": "osdp", "osdp": {"secrets_file": "s", "adress": 3}}, "door.osdp.adress"),
             ({"backend": "gpio", "wiegand": {"enabled": True, "d0_pin": 17}}, "wiegand.d0_pin"),
             ({"backend": "none", "wiegand": {"enabled": True}}, "wiegand.enabled needs backend"),
             ({"backend": "gpio", "wiegand": {"pulse_us": 5}}, "door.wiegand.pulse_us")]
    for door_table, message in cases:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            load_settings(EdgeSettings, None, storage={"path": str(tmp_path)}, door=door_table)
    # a secrets file without the key and install mode off: a clear start-up error, pins released
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    s = DoorSettings(backend="osdp", osdp={"secrets_file": str(tmp_path / "none.toml"), "device": "/dev/null"})
    with pytest.raises(ConfigError, match=r"\[door\.osdp\] osdp: no \[osdp\] scbk"):
        make_door_io(s, pin_factory=factory)
    make_door_io(DoorSettings(backend="gpio"), pin_factory=factory).close()  # the pins were freed


def test_the_daemon_refuses_a_bad_door_osdp_table_with_exit_2(tmp_path):
    import subprocess
    import sys

    cfg = tmp_path / "edge.toml"
    cfg.write_text('[door]\nbackend = "osdp"\n[door.osdp]\nsecrets_file = "x"\nbaud = 1234\n')
    done = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(cfg)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-500:]
    assert "door.osdp.baud" in done.stderr


def test_mqtt_backend_needs_a_broker_and_a_key():
    from pydantic import ValidationError

    from edge.core.settings import ConfigError
    from edge.door.backends import make_door_io
    from edge.door.settings import DoorSettings

    with pytest.raises(ValidationError, match="mqtt_secret_key"):
        DoorSettings(backend="mqtt")
    with pytest.raises(ConfigError, match="mqtt"):
        make_door_io(DoorSettings(backend="mqtt", mqtt_secret_key="k" * 32))


@pytest.mark.parametrize("bad", [
    {"held_open_s": float("inf")},  # no held-open alarm ever
    {"exit_stuck_s": float("inf")},  # an exit button never reported stuck
    {"input_events_window_s": 1e9},  # after input_events_max changes, a contact's events muted for good
    {"held_prealarm_s": float("inf")},
    {"relay_pin": 2},  # pulled up on the board: an active-high relay energised whenever the pin is released
    {"relay_pin": 14},  # the serial console's TX, high while it runs
])
def test_config_values_that_silently_switch_off_an_alarm_or_energise_the_relay_at_boot_are_refused(bad):
    from pydantic import ValidationError

    from edge.door.settings import DoorSettings

    with pytest.raises(ValidationError):
        DoorSettings(backend="gpio", **bad)
