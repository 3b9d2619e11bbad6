"""How long one main-loop turn can take, against systemd's WatchdogSec."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge.daemon.config import EdgeSettings

log = logging.getLogger("edge.daemon")


def worst_loop_turn_s(s: EdgeSettings) -> float:
    """Upper bound of one main-loop turn: the camera's wait plus, when the hub is asked,
    every face of the frame going to it with all its retries (backoff 0.2 s, doubling)."""
    cloud = 0.0
    if s.hub.url and s.policy.cloud_fallback:
        backoff = sum(0.2 * 2 ** i for i in range(s.hub.retries))
        cloud = s.vision.max_faces * (s.hub.timeout * (s.hub.retries + 1) + backoff)
    return 0.5 + cloud


def warn_if_too_short(s: EdgeSettings, ping_every_s: float | None) -> None:
    """`ping_every_s` is half of WatchdogSec (None: no watchdog)."""
    worst = worst_loop_turn_s(s)
    if ping_every_s and worst >= 2 * ping_every_s:
        # A hub that answers slowly (not failing: the breaker stays closed) on every face of
        # one frame would then get a healthy daemon killed by the watchdog.
        log.warning("worst-case loop iteration %.0fs (%d faces x %gs hub timeout x %d tries) "
                    "reaches WatchdogSec %.0fs: lower [hub] timeout/retries or "
                    "[vision] max_faces, or raise WatchdogSec", worst, s.vision.max_faces,
                    s.hub.timeout, s.hub.retries + 1, 2 * ping_every_s)
