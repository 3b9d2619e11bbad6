"""Per-appid token buckets (code 15 when empty). Memory: one small entry per known appid."""

from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, rate_per_s: float, burst: int):
        self.rate = float(rate_per_s)
        self.burst = max(1, int(burst))
        self._buckets: dict[str, tuple[float, float]] = {}  # appid -> (tokens, last time)
        self._lock = threading.Lock()

    def would_allow(self, key: str, now: float | None = None) -> bool:
        """Whether `key` has a token now (none taken)."""
        return self._take(key, now, 0.0)

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one token for `key`; False when the bucket is empty. rate 0 = unlimited."""
        return self._take(key, now, 1.0)

    def _take(self, key: str, now: float | None, taken: float) -> bool:
        """Whether `key` has a token now; `taken` of them go when it has."""
        if self.rate <= 0:
            return True
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            ok = tokens >= 1.0
            self._buckets[key] = (tokens - taken if ok else tokens, now)
            return ok


async def take_token(limiter, key: str) -> bool:
    """`limiter.allow(key)` from async code: a limiter kept in the database (`blocking`, one
    round trip) is asked off the event loop, the in-memory one directly."""
    if getattr(limiter, "blocking", False):
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(limiter.allow, key)
    return limiter.allow(key)



class RecordBudget:
    """Token buckets that take several tokens at once (a batch of records), per key: `rate_per_s`
    refilled, at most `capacity` held. In memory, per process."""

    def __init__(self, rate_per_s: float, capacity: float):
        self.rate, self.capacity = float(rate_per_s), float(capacity)
        self._buckets: dict[object, tuple[float, float]] = {}  # key -> (tokens, last time)
        self._lock = threading.Lock()

    def take(self, key: object, n: int, now: float | None = None) -> bool:
        """Take `n` tokens for `key`; False (none taken) when it has fewer."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, last = self._buckets.get(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            ok = tokens >= n
            self._buckets[key] = (tokens - n if ok else tokens, now)
            return ok
