"""edge.door.clock_sync: the kernel's word on whether the clock is synchronised, read for real
(whatever this machine's NTP state: the answers must agree with each other and with the clock)."""

from __future__ import annotations

import logging
import time

from edge.door import clock_sync


def test_the_kernel_answers_with_its_clock_state_and_the_time():
    state, seconds = clock_sync.read_kernel_clock()
    assert 0 <= state <= clock_sync.TIME_ERROR  # TIME_OK .. TIME_ERROR
    # the struct is laid out as the kernel fills it: its seconds are this clock's
    assert abs(seconds - time.time()) < 5
    assert clock_sync.kernel_clock_synchronised() is (state != clock_sync.TIME_ERROR)


def test_a_kernel_that_cannot_be_asked_counts_as_unsynchronised(monkeypatch, caplog):
    def missing():
        raise OSError("adjtimex is not available here: test")

    monkeypatch.setattr(clock_sync, "_adjtimex", missing)
    with caplog.at_level(logging.WARNING, logger="edge.door.clock_sync"):
        assert clock_sync.kernel_clock_synchronised() is False
    assert "taken as not synchronised" in caplog.text


def test_a_failing_call_counts_as_unsynchronised(monkeypatch):
    monkeypatch.setattr(clock_sync, "_adjtimex", lambda: lambda _timex: -1)
    assert clock_sync.kernel_clock_synchronised() is False
