"""Fixtures of the OSDP tests: a pseudo-terminal (what an RS-485 adapter looks like to the code)
and a fresh secure-channel key (SCBK) per test."""

from __future__ import annotations

import secrets

import pytest

from edge.bench.door_osdp import Pty


@pytest.fixture
def pty():
    bus = Pty.open()
    yield bus
    bus.close()


@pytest.fixture
def key() -> bytes:
    return secrets.token_bytes(16)
