"""`[door] backend = "gpio"`: the lock relay and the door's inputs on the Pi's 40-pin header,
through gpiozero (docs/door.md has the wiring).

    relay    OutputDevice; `relay_active_high` says which pin level energises the module
    contact  DigitalInputDevice with the pull-up, to ground through the switch; NC (closed while
             the door is closed: a cut wire reads as open) or NO, by `contact_closed_when_door`
    exit     Button with the pull-up (normally open, to ground)
    tamper   DigitalInputDevice with the pull-up, closed while the enclosure is shut
    inputs are debounced by gpiozero (`bounce_s`)

The pin factory is gpiozero's choice (GPIOZERO_PIN_FACTORY, else lgpio on a Pi), or `lgpio` or
`mock` by `[door] pin_factory`; tests pass gpiozero's MockFactory and drive the input pins.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from edge.core.settings import ConfigError
from edge.door.interface import DoorInput, DoorIOError, GrantNotice, InputKind

if TYPE_CHECKING:
    from edge.door.settings import DoorSettings

log = logging.getLogger("edge.door")


def pin_factory_named(name: str) -> Any:
    """gpiozero's pin factory `name` ("" = gpiozero's default: None)."""
    if name == "mock":
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    if name == "lgpio":
        try:
            from gpiozero.pins.lgpio import LGPIOFactory

            return LGPIOFactory()
        except Exception as exc:  # no lgpio module, or no GPIO chip on this machine
            raise ConfigError(f"[door] pin_factory = \"lgpio\": {type(exc).__name__}: {exc} "
                              "(on a Pi: apt install python3-lgpio, and the venv made with "
                              "VENV_FLAGS=--system-site-packages; docs/raspberry-pi.md)") from None
    return None


def _pin(number: int) -> int | None:
    return None if number < 0 else number  # -1 in the config: not wired


class GpioDoor:
    name = "gpio"

    def __init__(self, *, relay_pin: int, relay_active_high: bool = True, locked_level: bool = False,
                 contact_pin: int | None = None, contact_nc: bool = True, exit_pin: int | None = None,
                 tamper_pin: int | None = None, bounce_s: float = 0.05, pin_factory: Any = None):
        try:
            from gpiozero import Button, DigitalInputDevice, OutputDevice
        except ImportError as exc:
            raise ConfigError(f"[door] backend = \"gpio\" needs gpiozero ({exc})") from None
        self.pins = {"relay": relay_pin, "contact": contact_pin, "exit": exit_pin, "tamper": tamper_pin}
        self.contact_nc = contact_nc
        self._on_input: Callable[[DoorInput], None] | None = None
        self._devices: list[Any] = []
        self.relay_errors = 0
        bounce = bounce_s or None
        try:
            # The relay starts at the locked level: the pin is driven before any input is read.
            self.relay = OutputDevice(relay_pin, active_high=relay_active_high, initial_value=locked_level,
                                      pin_factory=pin_factory)
            self._devices.append(self.relay)
            self.contact = self._input(DigitalInputDevice, contact_pin, bounce, pin_factory)
            self.exit = self._input(Button, exit_pin, bounce, pin_factory)
            self.tamper = self._input(DigitalInputDevice, tamper_pin, bounce, pin_factory)
        except ConfigError:
            self.close()
            raise
        except Exception as exc:  # a pin in use, no GPIO on this machine: a clear start-up error
            self.close()
            raise ConfigError(f"[door] gpio pins could not be opened: {type(exc).__name__}: {exc}") from None

    @classmethod
    def from_settings(cls, s: DoorSettings, *, pin_factory: Any = None) -> GpioDoor:
        from edge.door.controller import relay_level

        return cls(relay_pin=s.relay_pin, relay_active_high=s.relay_active_high,
                   locked_level=relay_level(False, s.lock_type), contact_pin=_pin(s.contact_pin),
                   contact_nc=s.contact_closed_when_door == "closed", exit_pin=_pin(s.exit_pin),
                   tamper_pin=_pin(s.tamper_pin), bounce_s=s.bounce_s,
                   pin_factory=pin_factory if pin_factory is not None else pin_factory_named(s.pin_factory))

    def _input(self, cls: Any, pin: int | None, bounce: float | None, factory: Any) -> Any:
        if pin is None:
            return None
        device = cls(pin, pull_up=True, bounce_time=bounce, pin_factory=factory)
        self._devices.append(device)
        return device

    # -- what the door reads: "active" as the controller means it ---------------------------
    def _door_open(self) -> bool:
        closed_switch = bool(self.contact.is_active)  # pulled up: active = switch closed to ground
        return not closed_switch if self.contact_nc else closed_switch

    def _tampered(self) -> bool:
        return not self.tamper.is_active  # the switch is closed while the enclosure is shut

    def start(self, on_input: Callable[[DoorInput], None]) -> None:
        self._on_input = on_input
        if self.contact is not None:
            self.contact.when_activated = lambda: self._report(InputKind.CONTACT, self._door_open())
            self.contact.when_deactivated = lambda: self._report(InputKind.CONTACT, self._door_open())
            self._report(InputKind.CONTACT, self._door_open(), initial=True)
        if self.exit is not None:
            self.exit.when_activated = lambda: self._report(InputKind.EXIT, True)
            self.exit.when_deactivated = lambda: self._report(InputKind.EXIT, False)
            if self.exit.is_active:
                self._report(InputKind.EXIT, True, initial=True)
        if self.tamper is not None:
            self.tamper.when_activated = lambda: self._report(InputKind.TAMPER, self._tampered())
            self.tamper.when_deactivated = lambda: self._report(InputKind.TAMPER, self._tampered())
            if self._tampered():
                self._report(InputKind.TAMPER, True, initial=True)

    def _report(self, kind: InputKind, active: bool, initial: bool = False) -> None:
        if self._on_input is not None:
            self._on_input(DoorInput(kind, active, time.monotonic(), detail={"initial": True} if initial else {}))

    def set_relay(self, energised: bool) -> None:
        try:
            self.relay.value = energised
            if bool(self.relay.value) != energised:
                raise DoorIOError("the relay pin did not take the level")
        except DoorIOError:
            self.relay_errors += 1
            raise
        except Exception as exc:
            self.relay_errors += 1
            raise DoorIOError(f"relay pin {self.pins['relay']}: {type(exc).__name__}: {exc}") from exc

    def announce_grant(self, notice: GrantNotice) -> None:
        pass  # no panel on this backend

    def indicate(self, what: str) -> None:
        pass  # no LED or buzzer wired in this version

    def health(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": "ok", "pins": {k: v for k, v in self.pins.items() if v is not None},
                               "relay_errors": self.relay_errors}
        try:
            out["relay_energised"] = bool(self.relay.value)
            if self.contact is not None:
                out["contact"] = "open" if self._door_open() else "closed"
        except Exception as exc:
            out.update(status="error", error=type(exc).__name__)
        return out

    def close(self) -> None:
        for device in reversed(self._devices):
            try:
                device.close()  # the relay's pin is released: a fail-secure lock locks
            except Exception as exc:
                log.warning("closing gpio device failed: %s", type(exc).__name__)
        self._devices.clear()
