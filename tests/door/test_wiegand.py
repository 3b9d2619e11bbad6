"""Wiegand out: the bit order on gpiozero's mock pins (the pin changes recorded in order), the
lgpio wave's steps as lgpio packs them, and both lines never low together. Pulse timing on real
pins cannot be checked here (docs/osdp-wiegand.md says how to on a Pi)."""

from __future__ import annotations

import struct

import pytest

from edge.core.credentials import Credential, decode_wiegand, wiegand_bits
from edge.door.interface import DoorIOError, GrantNotice
from edge.door.wiegand import GpiozeroWiegand, WiegandOut, WiegandSettings, train_seconds, wave_steps
from tests.door.support import RecordingPin

SETTINGS = WiegandSettings(d0_pin=5, d1_pin=6, driver="gpiozero")
CREDS = [Credential("h10301", 12345, facility=42), Credential("34bit", 0x1B81, facility=0x89D4),
         Credential("h10304", 424242, facility=31337), Credential("raw", 0b10110, bits=5)]


def bits_from_changes(log: list[tuple[str, bool]]) -> list[int]:
    """Read a Wiegand receiver's way: a falling edge on D0 is a 0, on D1 a 1; checks that a
    line goes back high before the other falls."""
    bits, low = [], None
    for name, state in log:
        if not state:
            assert low is None, "both lines low at once"
            low = name
            bits.append(0 if name == "GPIO5" else 1)
        else:
            assert low == name, f"{name} rose without having fallen"
            low = None
    assert low is None, "a line left low"
    return bits


@pytest.mark.parametrize("cred", CREDS)
def test_bit_order_on_mock_pins(recording_pins, cred: Credential) -> None:
    sleeps: list[float] = []
    out = WiegandOut(SETTINGS, GpiozeroWiegand(SETTINGS, pin_factory=recording_pins, sleep=sleeps.append))
    try:
        d0, d1 = recording_pins.pin(5), recording_pins.pin(6)
        assert d0.state and d1.state  # both idle high from the start
        RecordingPin.log.clear()
        d0.clear_states()
        d1.clear_states()
        out.announce_grant(GrantNotice("ev", "ben", (cred,)))
        sent = bits_from_changes(RecordingPin.log)
        assert sent == wiegand_bits(cred)
        assert decode_wiegand(sent, cred.fmt) == cred
        # each pin's own history: one low and one high per bit it carries, ending high
        zeros = sent.count(0)
        assert [s.state for s in d0.states] == [True] + [False, True] * zeros
        assert [s.state for s in d1.states] == [True] + [False, True] * (len(sent) - zeros)
        assert sleeps == [50e-6, 1000e-6] * len(sent)
        assert out.health()["wiegand"]["sent"] == 1
    finally:
        out.close()


def test_no_credential_is_an_error(recording_pins) -> None:
    out = WiegandOut(SETTINGS, GpiozeroWiegand(SETTINGS, pin_factory=recording_pins, sleep=lambda s: None))
    RecordingPin.log.clear()  # the pins going high (idle) at set-up
    try:
        with pytest.raises(DoorIOError, match="no credential"):
            out.announce_grant(GrantNotice("ev", "ann", ()))
        assert RecordingPin.log == []
    finally:
        out.close()


def test_a_failing_pin_is_a_door_io_error(recording_pins) -> None:
    driver = GpiozeroWiegand(SETTINGS, pin_factory=recording_pins, sleep=lambda s: None)
    out = WiegandOut(SETTINGS, driver)
    driver._d1.close()  # the pin is gone (closed device): its next use raises
    with pytest.raises(DoorIOError, match="wiegand"):
        out.send(Credential("h10301", 65535, facility=255))
    assert out.health()["wiegand"]["last_error"]
    driver._d0.close()


def test_wave_steps_follow_the_bits_and_settings() -> None:
    settings = WiegandSettings(pulse_us=40, gap_us=2000)
    steps = wave_steps([0, 1, 1], settings)
    # levels by lgpio's rule, bit 0 = D0's: a 0 bit is D0 low (0b10), a 1 bit is D1 low (0b01);
    # this test once read them the other way round, and so did the code (every bit inverted)
    assert steps == [(0b10, 0b11, 40), (0b11, 0b11, 2000),  # a 0: D0 (bit 0) low
                     (0b01, 0b11, 40), (0b11, 0b11, 2000),  # a 1: D1 (bit 1) low
                     (0b01, 0b11, 40), (0b11, 0b11, 2000)]
    assert train_seconds(26, WiegandSettings()) == pytest.approx(26 * 1050e-6)


def test_lgpio_driver_hands_lgpio_one_wave(monkeypatch) -> None:
    """With the chip calls answered (no /dev/gpiochip here), the real lgpio module packs the
    wave: the bytes it would give its timing thread decode to the credential's bits."""
    lgpio = pytest.importorskip("lgpio")
    from edge.door.wiegand import LgpioWiegand

    calls: dict[str, object] = {}
    monkeypatch.setattr(lgpio._lgpio, "_gpiochip_open", lambda chip: 0)
    monkeypatch.setattr(lgpio._lgpio, "_gpiochip_close", lambda h: 0)
    monkeypatch.setattr(lgpio._lgpio, "_group_claim_output",
                        lambda h, flags, gpio, levels: calls.update(claim=(bytes(gpio), bytes(levels))) or 0)
    monkeypatch.setattr(lgpio._lgpio, "_tx_wave",
                        lambda h, group, pulses: calls.update(wave=(group, bytes(pulses))) or 1)
    monkeypatch.setattr(lgpio._lgpio, "_tx_busy", lambda h, group, kind: 0)
    monkeypatch.setattr(lgpio._lgpio, "_group_free", lambda h, group: 0)
    settings = WiegandSettings(d0_pin=23, d1_pin=24, driver="lgpio", chip=0)
    out = WiegandOut(settings, LgpioWiegand(settings))
    cred = Credential("h10304", 12345, facility=42)
    out.send(cred)
    out.close()
    assert calls["claim"] == (struct.pack("II", 23, 24), struct.pack("II", 1, 1))
    group, packed = calls["wave"]
    assert group == 23
    steps = [struct.unpack_from("QQQ", packed, i) for i in range(0, len(packed), 24)]
    assert steps == [tuple(s) for s in wave_steps(wiegand_bits(cred), settings)]
    lows = [levels for levels, _, delay in steps if levels != 0b11]
    # the panel's reading: a pulse on D0 (its level, bit 0, low) is a 0, on D1 a 1
    assert [0 if not levels & 0b01 else 1 for levels in lows] == wiegand_bits(cred)


def test_a_real_pin_factory_keeps_the_timed_lgpio_wave(monkeypatch, recording_pins) -> None:
    """Any pin factory chose gpiozero's untimed pulses: `[door] pin_factory = "lgpio"` on a Pi
    (also with driver = "lgpio") gave the panel pulses far outside its 20-100 µs, silently.
    Only a mock factory (tests) or driver = "gpiozero" does now."""
    lgpio = pytest.importorskip("lgpio")
    from edge.door.wiegand import LgpioWiegand, open_driver

    for name, answer in (("_gpiochip_open", 0), ("_gpiochip_close", 0), ("_group_claim_output", 0),
                         ("_group_free", 0)):
        monkeypatch.setattr(lgpio._lgpio, name, lambda *a, answer=answer: answer)
    real_factory = object()  # stands for gpiozero's LGPIOFactory on a Pi
    for driver in ("auto", "lgpio"):
        opened = open_driver(WiegandSettings(driver=driver, chip=0), pin_factory=real_factory)
        assert isinstance(opened, LgpioWiegand), driver
        opened.close()
    mocked = open_driver(WiegandSettings(), pin_factory=recording_pins)
    assert isinstance(mocked, GpiozeroWiegand)
    mocked.close()

