"""How old a decision event is, on a clock no time setting moves.

An event's `timestamp` is wall-clock time, and the wall clock of a Pi (no real-time clock) is
stepped by NTP after boot, by up to the whole time it was powered off. Aged by the wall clock, an
accept decided before a step back looked fresh however long it waited for the broker, and a
controller opened the door for someone long gone. So each event is stamped, when it is decided,
with the kernel's boot id and CLOCK_BOOTTIME (seconds since boot, suspend included; never
stepped), and kept so in the outbox: within one boot its age is the difference of two such
readings. An event from an earlier boot waited through a reboot and is stale whatever the wall
clock says. Rows stored before this stamp existed are aged by the wall clock as before.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class Born:
    """When an event was decided: the boot it was decided in, and seconds since that boot."""

    boot: str
    at: float


@lru_cache(maxsize=1)
def _boot_id() -> str | None:
    try:
        return BOOT_ID.read_text().strip() or None
    except OSError:  # not Linux: no boot clock, events are aged by the wall clock
        return None


def born_now() -> Born | None:
    boot = _boot_id()
    if boot is None or not hasattr(time, "CLOCK_BOOTTIME"):
        return None
    return Born(boot, time.clock_gettime(time.CLOCK_BOOTTIME))


def age_s(wall_age: float, born: Born | None, now: Born | None) -> tuple[float, bool]:
    """(age in seconds, whether it is certainly stale whatever the threshold): by the boot clock
    when both readings have one, else by the wall clock (`wall_age`). Across a reboot the age
    is unknown but at least the time since this boot: certainly stale."""
    if born is None or now is None:
        return wall_age, False
    if born.boot != now.boot:
        return max(wall_age, now.at), True
    return max(0.0, now.at - born.at), False
