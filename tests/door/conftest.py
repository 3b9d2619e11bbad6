"""Fixtures of the OSDP and Wiegand tests: a pseudo-terminal (what an RS-485 adapter looks like
to the code), a fresh secure-channel key (SCBK) per test, and mock pins whose changes are
recorded in the order they happen."""

from __future__ import annotations

import secrets

import pytest

from edge.bench.door_osdp import Pty
from tests.door.support import RecordingPin


@pytest.fixture
def pty():
    bus = Pty.open()
    yield bus
    bus.close()


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(16)


@pytest.fixture
def recording_pins():
    """gpiozero's mock pins, each change appended to RecordingPin.log (emptied here)."""
    from gpiozero.pins.mock import MockFactory

    RecordingPin.log = []
    factory = MockFactory(pin_class=RecordingPin)
    yield factory
    factory.close()
