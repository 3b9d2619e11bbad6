"""`edge-verifier door release`: the relay of a daemon that died without a clean stop is left as a
clean stop leaves it (gpiozero's mock pins stand in for the Pi's, which keep an output's level
when the process that drove it dies)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edge.door.backends.gpio import GpioDoor
from edge.door.controller import DoorController, DoorTiming, relay_level
from edge.door.release import RELAY_FILE, relay_of, release_remembered, remember_relay
from edge.door.settings import DoorSettings
from tests.door.support import Clock

RELAY = 17
ROOT = Path(__file__).parent.parent.parent


@pytest.fixture
def pins():
    from gpiozero.pins.mock import MockFactory

    factory = MockFactory()
    yield factory
    factory.reset()


@pytest.mark.parametrize("active_high", [True, False])
@pytest.mark.parametrize("lock_type", ["fail-secure", "fail-safe"])
def test_a_relay_left_driven_by_a_killed_daemon_is_released_as_a_clean_stop_releases_it(
        pins, tmp_path, active_high, lock_type):
    s = DoorSettings(backend="gpio", relay_pin=RELAY, relay_active_high=active_high, lock_type=lock_type,
                     contact_pin=-1, exit_pin=-1, tamper_pin=-1, bounce_s=0)
    io = GpioDoor.from_settings(s, pin_factory=pins)
    door = DoorController(io, lock_type=s.lock_type, timing=DoorTiming.from_settings(s), clock=Clock())
    door.start()
    remember_relay(tmp_path, relay_of(s))
    door.grant("p", "granted")
    locked_pin_level = relay_level(False, lock_type) == active_high
    relay = pins.pin(RELAY)
    # killed here: its pins are no longer its own, and the pin stays as it was (unlocked)
    pins.release_all(io.relay)
    assert (relay.function, bool(relay.state)) == ("output", not locked_pin_level)

    assert "driven to its locked level" in release_remembered(tmp_path, pin_factory=pins)

    # what a clean stop leaves: driven to locked, then given back as an input (relay released)
    assert bool(relay.state) == locked_pin_level and relay.function == "input"
    clean = pins.pin(18)
    DoorController(GpioDoor.from_settings(s.model_copy(update={"relay_pin": 18}), pin_factory=pins),
                   lock_type=s.lock_type, timing=DoorTiming.from_settings(s), clock=Clock()).close()
    assert (bool(clean.state), clean.function) == (bool(relay.state), relay.function)


def test_only_a_relay_on_this_pis_pins_is_written_down():
    assert relay_of(DoorSettings(backend="none")) is None
    assert relay_of(DoorSettings(backend="gpio", relay_active_high=False, lock_type="fail-safe")) == {
        "pin": 17, "active_high": False, "locked_level": True, "pin_factory": ""}


def _release(state_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", "door", "release", "--state-dir", str(state_dir)],
                          capture_output=True, text=True, timeout=60)


def test_the_command_releases_what_was_written_down_and_says_when_it_cannot(tmp_path):
    assert _release(tmp_path).stdout.startswith("no relay written down")  # another backend: nothing to do
    remember_relay(tmp_path, {"pin": RELAY, "active_high": True, "locked_level": False, "pin_factory": "mock"})
    done = _release(tmp_path)
    assert done.returncode == 0 and "relay pin 17 driven to its locked level" in done.stdout, done.stderr
    (tmp_path / RELAY_FILE).write_text("{not json")
    broken = _release(tmp_path)
    assert broken.returncode == 1 and "door-relay.json: unreadable" in broken.stderr
    remember_relay(tmp_path, None)
    assert not (tmp_path / RELAY_FILE).exists()


def test_the_unit_releases_the_relay_after_every_exit_from_the_daemons_data_directory():
    unit = (ROOT / "systemd" / "edge-verifier.service").read_text().splitlines()
    (post,) = [line.split("=", 1)[1] for line in unit if line.startswith("ExecStopPost=")]
    (storage,) = [line.split("=", 2)[2] for line in unit if line.startswith("Environment=EDGE_VERIFIER_STORAGE__PATH=")]
    assert post.split()[1:] == ["door", "release", "--state-dir", storage]
    assert post.split()[0] == next(line.split("=", 1)[1].split()[0] for line in unit if line.startswith("ExecStart="))
