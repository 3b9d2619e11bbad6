"""Wiegand out: the granted person's credential as a pulse train on two lines, D0 and D1, to
the site's panel (as a card reader would send it).

Both lines idle high; a 0 bit pulls D0 low for `pulse_us`, a 1 bit pulls D1 low, and `gap_us`
separate the end of one pulse from the start of the next (the usual 50 µs / 1 ms; panels accept
20-100 µs pulses and 0.2-20 ms gaps). Python's sleeps miss 50 µs by 70-230 µs, so on a Pi the
train goes out as an lgpio wave: the whole train handed to lgpio's own timing thread at once
(`tx_wave` on the two pins claimed as one group). Where lgpio is absent (tests, a machine
without /dev/gpiochip*), `GpiozeroWiegand` drives the pins one change at a time through gpiozero;
on gpiozero's mock pins the tests read the bit order back from the recorded pin changes. It is
not for a real panel: its timing is whatever the sleeps give. docs/osdp-wiegand.md says how to
check the real timing with a second GPIO pair.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Literal, Protocol

from pydantic import ConfigDict, Field

from edge.core.credentials import Credential, wiegand_bits
from edge.core.settings import Section
from edge.door.interface import DoorIOError, GrantNotice

log = logging.getLogger(__name__)


class WiegandSettings(Section):
    """`[door.wiegand]`: Wiegand out to the site's panel."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = Field(False, description="Send each face grant's card to the panel as a Wiegand train too "
                          "(backend gpio or osdp;\nnever a second relay).")
    d0_pin: int = Field(5, ge=0, le=63, description="GPIO (BCM number) of the DATA0 line.")
    d1_pin: int = Field(6, ge=0, le=63, description="GPIO (BCM number) of the DATA1 line.")
    pulse_us: int = Field(50, ge=20, le=200, description="How long a line is pulled low for one bit, in µs.")
    gap_us: int = Field(1000, ge=200, le=20000, description="Time between two pulses, in µs.")
    driver: Literal["auto", "lgpio", "gpiozero"] = Field(
        "auto", description="lgpio (a timed wave: use on a Pi), gpiozero (untimed; tests), auto: lgpio if present.")
    chip: int | None = Field(None, ge=0, description="gpiochip number for lgpio; empty: 4 on a Pi 5, else 0.")


# A wave step: (levels of the group's pins, which pins the step sets, µs until the next step);
# bit 0 of the levels and the mask is D0, bit 1 is D1 (the order the group is claimed in).
Step = tuple[int, int, int]
IDLE = 0b11


def wave_steps(bits: list[int], settings: WiegandSettings) -> list[Step]:
    """The lgpio wave of `bits`: per bit, its line low for pulse_us, then both high for gap_us."""
    steps: list[Step] = []
    for bit in bits:
        # levels, not the pins pulled: a 1 pulls D1 low (D0 stays high: 0b01), a 0 pulls D0 low
        # (0b10). The two were swapped: every bit reached the panel inverted (parity errors; a
        # raw card N of k bits read as 2^k - 1 - N, another card).
        levels = 0b01 if bit else 0b10
        steps.append((levels, IDLE, settings.pulse_us))
        steps.append((IDLE, IDLE, settings.gap_us))
    return steps


def train_seconds(n_bits: int, settings: WiegandSettings) -> float:
    return n_bits * (settings.pulse_us + settings.gap_us) / 1e6


class WiegandDriver(Protocol):
    def send_bits(self, bits: list[int]) -> None: ...

    def close(self) -> None: ...


class LgpioWiegand:
    """The pulse train as an lgpio wave on a Pi: exact to a few µs, whatever Python does meanwhile."""

    def __init__(self, settings: WiegandSettings):
        import lgpio

        self._lgpio = lgpio
        self.settings = settings
        chip = settings.chip if settings.chip is not None else (4 if os.path.exists("/dev/gpiochip4") else 0)
        try:
            self._handle = lgpio.gpiochip_open(chip)
        except lgpio.error as exc:
            raise DoorIOError(f"wiegand: cannot open gpiochip{chip}: {exc}") from None
        self._group = settings.d0_pin  # lgpio names a group by its first pin
        try:
            lgpio.group_claim_output(self._handle, [settings.d0_pin, settings.d1_pin], [1, 1])  # idle high
        except lgpio.error as exc:
            lgpio.gpiochip_close(self._handle)
            raise DoorIOError(f"wiegand: cannot claim GPIO {settings.d0_pin}/{settings.d1_pin}: {exc}") from None

    def send_bits(self, bits: list[int]) -> None:
        lg = self._lgpio
        pulses = [lg.pulse(levels, mask, delay) for levels, mask, delay in wave_steps(bits, self.settings)]
        deadline = time.monotonic() + train_seconds(len(bits), self.settings) + 0.5
        try:
            lg.tx_wave(self._handle, self._group, pulses)
            while lg.tx_busy(self._handle, self._group, lg.TX_WAVE):  # the next train must not overlap
                if time.monotonic() > deadline:
                    raise DoorIOError("wiegand: the wave did not finish in time")
                time.sleep(0.002)
        except lg.error as exc:
            raise DoorIOError(f"wiegand: {exc}") from None

    def close(self) -> None:
        lg = self._lgpio
        try:
            lg.group_free(self._handle, self._group)
        finally:
            lg.gpiochip_close(self._handle)


class GpiozeroWiegand:
    """The pulse train through gpiozero, one pin change at a time: for mock pins and machines
    without lgpio; the sleeps decide the timing (`sleep` injectable for tests)."""

    def __init__(self, settings: WiegandSettings, pin_factory: Any = None,
                 sleep: Callable[[float], None] = time.sleep):
        from gpiozero import DigitalOutputDevice

        self.settings = settings
        self._sleep = sleep
        # Idle high: the device is "on" while idle, a bit is a short "off".
        self._d0 = DigitalOutputDevice(settings.d0_pin, initial_value=True, pin_factory=pin_factory)
        try:
            self._d1 = DigitalOutputDevice(settings.d1_pin, initial_value=True, pin_factory=pin_factory)
        except Exception:
            self._d0.close()
            raise

    def send_bits(self, bits: list[int]) -> None:
        pulse, gap = self.settings.pulse_us / 1e6, self.settings.gap_us / 1e6
        for bit in bits:
            line = self._d1 if bit else self._d0
            line.off()
            self._sleep(pulse)
            line.on()
            self._sleep(gap)

    def close(self) -> None:
        self._d0.close()
        self._d1.close()


def open_driver(settings: WiegandSettings, pin_factory: Any = None) -> WiegandDriver:
    # gpiozero's untimed pulses for tests (a mock pin factory) or when asked: any pin factory
    # chose them, also `[door] pin_factory = "lgpio"` on a real Pi, silently giving a panel
    # pulses of 126-279 µs where it takes 20-100
    if settings.driver == "gpiozero" or (settings.driver == "auto" and _is_mock(pin_factory)):
        return GpiozeroWiegand(settings, pin_factory)
    try:
        return LgpioWiegand(settings)
    except ImportError:
        if settings.driver == "lgpio":
            raise DoorIOError("wiegand: driver = \"lgpio\" but lgpio is not installed "
                              "(pip install 'edge-verifier[pi]' or apt install python3-lgpio)") from None
    log.warning("wiegand: lgpio not installed; pulses through gpiozero, untimed (not for a real panel)")
    return GpiozeroWiegand(settings, pin_factory)


def _is_mock(pin_factory: Any) -> bool:
    if pin_factory is None:
        return False
    from gpiozero.pins.mock import MockFactory

    return isinstance(pin_factory, MockFactory)


class WiegandOut:
    """Sends the granted person's first credential to the panel; one train at a time."""

    name = "wiegand"

    def __init__(self, settings: WiegandSettings, driver: WiegandDriver | None = None):
        self.settings = settings
        self._driver = driver if driver is not None else open_driver(settings)
        self._lock = threading.Lock()
        self._sent = 0
        self._last_error = ""

    def send(self, cred: Credential) -> None:
        bits = wiegand_bits(cred)
        with self._lock:
            try:
                self._driver.send_bits(bits)
            except DoorIOError as exc:
                self._last_error = str(exc)
                raise
            except Exception as exc:
                self._last_error = f"{type(exc).__name__}: {exc}"
                raise DoorIOError(f"wiegand: {self._last_error}") from exc
            self._sent += 1
        log.info("wiegand: %d bits sent (%s)", len(bits), cred.fmt)

    def announce_grant(self, notice: GrantNotice) -> None:
        if not notice.credentials:
            raise DoorIOError(f"wiegand: no credential for event {notice.event_id}: nothing to send the panel")
        self.send(notice.credentials[0])

    def health(self) -> dict[str, Any]:
        return {"wiegand": {"driver": type(self._driver).__name__, "sent": self._sent, "last_error": self._last_error}}

    def close(self) -> None:
        with self._lock:
            self._driver.close()
