"""A limit on refused claims per claimed person ([verify] max_refusals, refusal_window_s, lockout_s).

A claim holds FAR 1e-4 (edge.core.false_admit.claim_accept), but a stranger holding a member's
badge may present it again and again: every claim is one more chance. After `max_refusals`
claims of one person refused on the face within `refusal_window_s`, that person's claims are
refused at once for `lockout_s` (reason `claim_locked_out`): a stolen badge gets a few tries, not
as many as the reader will send. An admitted claim clears the count. Refusals the face did not
decide (the offline policy's, a claim that saw no face) do not count: a hub outage must not lock
members out.

Counted from the main loop (decisions), asked from paho's and the API's threads (claims): hence
the lock. At most MAX_PERSONS people are followed (a signed sender naming random ids cannot grow
it without bound); the oldest entry goes first.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from typing import Callable

log = logging.getLogger("edge.daemon")

LOCKED_OUT = "claim_locked_out"
MAX_PERSONS = 10_000


class ClaimLockout:
    def __init__(self, max_refusals: int, window_s: float, lockout_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.max_refusals, self.window_s, self.lockout_s = max_refusals, window_s, lockout_s
        self._clock = clock
        self._refusals: OrderedDict[str, deque[float]] = OrderedDict()  # person -> refusal times
        self._until: dict[str, float] = {}  # person -> end of their lockout
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.max_refusals > 0

    def refused(self, person_id: str) -> bool:
        """Count a claim of `person_id` refused on the face; True when it starts a lockout."""
        if not self.enabled:
            return False
        now = self._clock()
        with self._lock:
            times = self._refusals.pop(person_id, None) or deque()
            times.append(now)
            while times and now - times[0] > self.window_s:
                times.popleft()
            if len(times) < self.max_refusals:
                self._refusals[person_id] = times  # most recent last: the oldest is dropped first
                if len(self._refusals) > MAX_PERSONS:
                    self._refusals.popitem(last=False)
                return False
            self._until[person_id] = now + self.lockout_s  # the count starts again after it
            self._forget_ended(now)
        log.warning("claims for %s refused for %.0f s: %d refused within %.0f s", person_id,
                    self.lockout_s, self.max_refusals, self.window_s)
        return True

    def admitted(self, person_id: str) -> None:
        """A claim of `person_id` was admitted: their count starts again."""
        with self._lock:
            self._refusals.pop(person_id, None)

    def locked(self, person_id: str) -> float:
        """Seconds left of `person_id`'s lockout (0: their claims are decided as usual)."""
        with self._lock:
            until = self._until.get(person_id)
            left = 0.0 if until is None else until - self._clock()
            if until is not None and left <= 0:
                del self._until[person_id]
            return max(left, 0.0)

    def _forget_ended(self, now: float) -> None:
        for person_id in [p for p, until in self._until.items() if until <= now]:
            del self._until[person_id]

    def health(self) -> dict:
        with self._lock:
            self._forget_ended(self._clock())
            return {"max_refusals": self.max_refusals, "locked_out": len(self._until)}
