"""The none backend: no hardware; its simulated inputs (demo) are lines appended to a file."""

from __future__ import annotations

from edge.door.backends.none import NoHardware, parse_line
from edge.door.controller import DoorController, DoorState, DoorTiming
from edge.door.interface import InputKind
from tests.conftest import wait_until


def test_lines_are_inputs_and_anything_else_is_ignored():
    assert parse_line("contact open").kind is InputKind.CONTACT and parse_line("contact open").active
    assert not parse_line("exit release").active
    assert parse_line("tamper on").kind is InputKind.TAMPER
    for junk in ("", "contact", "contact ajar", "relay on", "contact open now", "\x00\xff"):
        assert parse_line(junk) is None


def test_a_simulated_forced_opening(tmp_path):
    inputs = tmp_path / "inputs"
    c = DoorController(NoHardware(inputs), timing=DoorTiming())
    c.start()
    try:
        with inputs.open("a") as f:
            f.write("relay on\ncontact open\n")  # the first line is not an input: ignored
        assert wait_until(lambda: c.state is DoorState.FORCED, 5)
        assert not c.io.energised  # type: ignore[attr-defined]
        with inputs.open("a") as f:
            f.write("contact clo")  # half a line: waits for the rest
            f.flush()
            f.write("sed\n")
        assert wait_until(lambda: c.state is DoorState.LOCKED, 5)
    finally:
        c.close()
