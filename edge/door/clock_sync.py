"""Whether the system clock is synchronised, as the kernel knows it
(docs/door.md#unlocked-windows-and-the-clock).

An unlocked schedule window opens the door to anyone for as long as the wall clock says it is
inside the window, and a door without a hub prunes its only copy of the access log by it. A Pi
has no real-time clock: it boots on the time it was shut down at (fake-hwclock) or on a clock set
by hand, and only an NTP client makes that time true. So the door takes a scheduled `unlocked`
mode, and prunes that log, only while the kernel says the clock is synchronised.

The kernel keeps that flag (STA_UNSYNC in its NTP status) for whichever client disciplines the
clock: systemd-timesyncd (Raspberry Pi OS, Debian), chrony and ntpd clear it once synchronised,
and the kernel sets it again by itself once its estimated error passes 16 s (about nine hours
without the client's updates). `adjtimex` with no modes only reads it, needs no privilege, and
answers TIME_ERROR while the flag is set; `timedatectl`'s "System clock synchronized" reads the
same call.
"""

from __future__ import annotations

import ctypes
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

TIME_ERROR = 5  # adjtimex's answer while the clock is not synchronised (<sys/timex.h>)


class _Timex(ctypes.Structure):  # struct timex of <sys/timex.h>
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long), ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long), ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@functools.cache
def _adjtimex() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError) as exc:
        raise OSError(f"adjtimex is not available here: {exc}") from exc


def read_kernel_clock() -> tuple[int, int]:
    """(adjtimex's answer, the clock's seconds as the kernel returned them with it); OSError
    where the call is missing or fails."""
    adjtimex = _adjtimex()
    timex = _Timex()  # modes 0: read only
    state = adjtimex(ctypes.byref(timex))
    if state < 0:
        raise OSError(ctypes.get_errno(), "adjtimex failed")
    return state, timex.time_sec


def kernel_clock_synchronised() -> bool:
    """True while the kernel says the clock is synchronised; False when it says not, or cannot
    be asked (a door that cannot tell keeps its unlocked windows shut)."""
    try:
        state, _ = read_kernel_clock()
    except OSError as exc:
        log.warning("the clock's synchronisation cannot be read (%s): taken as not synchronised", exc)
        return False
    return state != TIME_ERROR
