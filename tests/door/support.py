"""What the door tests share: a clock the test moves, a controller on a backend, and the
events it produced by kind."""

from __future__ import annotations

from gpiozero.pins.mock import MockPin

from edge.door.backends.none import NoHardware
from edge.door.controller import DoorController, DoorMode, DoorTiming
from edge.door.interface import DoorInput, InputKind


class Clock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def door(io=None, *, lock_type: str = "fail-secure", mode: DoorMode = DoorMode.NORMAL, **timing) -> tuple:
    """(controller started on `io` (default: the none backend), its clock, io)."""
    io = io if io is not None else NoHardware()
    clock = Clock()
    c = DoorController(io, lock_type=lock_type, timing=DoorTiming(**timing), mode=mode, clock=clock)
    c.start()
    return c, clock, io


def contact(c: DoorController, is_open: bool) -> None:
    c.on_input(DoorInput(InputKind.CONTACT, is_open, c.clock()))


def press_exit(c: DoorController, pressed: bool = True) -> None:
    c.on_input(DoorInput(InputKind.EXIT, pressed, c.clock()))


def kinds(c: DoorController) -> list[str]:
    return [e["kind"] for e in c.take_events()]


class BrokenRelay(NoHardware):
    """The relay raises `exc` while it is set (a driver error, a pin gone, or a plain bug)."""

    def __init__(self, exc: Exception | None):
        super().__init__()
        self.exc = exc
        self.calls = 0

    def set_relay(self, energised: bool) -> None:
        self.calls += 1
        if self.exc is not None:
            raise self.exc
        super().set_relay(energised)


class RecordingPin(MockPin):
    """A mock pin that also appends each change to one log shared by every pin, in the order
    the changes happen (each MockPin's own `states` only orders its own changes)."""

    log: list[tuple[str, bool]] = []

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            RecordingPin.log.append((self.info.name, value))
        return changed
