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

A site of several doors shares its counts through the hub: each sync brings the claims the other
doors refused on the face (edge.hub.claim_refusals, from their access logs), and a person's
refusals here and there add up (`other_doors`). They stay in memory only: the next sync brings
them again.

The counts and lockouts are kept on disk (LockoutStore) as well: an attacker at the door can cut
its power, and a restart that forgot them would give the badge new tries every boot. In memory
the times are monotonic (an NTP jump after boot must not end or stretch a lockout); on disk they
are wall-clock, read back conservatively (a time in the future counts as now, a lockout never
longer than lockout_s from the restart).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import Callable, Sequence

from edge.core.sqlitedb import DamagedDatabase, open_durable, transaction

log = logging.getLogger("edge.daemon")

LOCKED_OUT = "claim_locked_out"
MAX_PERSONS = 10_000


class LockoutStore:
    """The lockout's counts on disk (SQLite, durable): what a restart must not forget.

    A write that fails (full or read-only disk) is logged and the lockout goes on in memory: a
    door must keep deciding, and the loss is only what a restart would forget.
    """

    def __init__(self, path: str | Path):
        try:
            self._db = open_durable(path)
        except DamagedDatabase as exc:  # only counts in it: set aside, a fresh one, the door goes on
            aside = Path(path).with_name(f"{Path(path).name}.damaged-{int(time.time())}")
            Path(path).rename(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            log.error("%s: %s; moved to %s, claim refusals counted before it are forgotten", path, exc.cause, aside)
            self._db = open_durable(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS refusal (person_id TEXT NOT NULL, at REAL NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS refusal_person ON refusal (person_id)")
        self._db.execute("CREATE TABLE IF NOT EXISTS locked (person_id TEXT PRIMARY KEY, until REAL NOT NULL)")
        self._failing = False

    def load(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """(person, wall time) of every refusal in order, and (person, wall end) of every lockout."""
        refusals = self._db.execute("SELECT person_id, at FROM refusal ORDER BY rowid").fetchall()
        locked = self._db.execute("SELECT person_id, until FROM locked").fetchall()
        return [(str(p), float(t)) for p, t in refusals], [(str(p), float(t)) for p, t in locked]

    def write(self, *statements: tuple[str, tuple]) -> None:
        try:
            with transaction(self._db) as db:
                for sql, args in statements:
                    db.execute(sql, args)
        except sqlite3.Error as e:
            if not self._failing:
                log.warning("claim lockout not saved (kept in memory until a restart): %s", e)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        self._db.close()


def _on_this_run(at: float, now: float, wall: float) -> float:
    """A wall-clock time `at` (saved, or another machine's) on this run's monotonic clock, whose
    `now` is the wall clock's `wall`; a time in the future counts as now (never stretches a count)."""
    return now - max(wall - at, 0.0)


def _forget_refusals(person_id: str) -> tuple[str, tuple]:
    return "DELETE FROM refusal WHERE person_id = ?", (person_id,)


class ClaimLockout:
    def __init__(self, max_refusals: int, window_s: float, lockout_s: float,
                 clock: Callable[[], float] = time.monotonic, store: LockoutStore | None = None,
                 wall: Callable[[], float] = time.time):
        self.max_refusals, self.window_s, self.lockout_s = max_refusals, window_s, lockout_s
        self._clock, self._wall = clock, wall
        self._refusals: OrderedDict[str, deque[float]] = OrderedDict()  # person -> refusal times
        self._remote: dict[str, list[float]] = {}  # person -> other doors' refusal times (the last sync's)
        # person -> the time their count started again (an admission here, a lockout's start):
        # other doors' refusals up to it no longer count, though the hub may send them once more
        self._fresh_from: dict[str, float] = {}
        self._until: dict[str, float] = {}  # person -> end of their lockout
        self._lock = threading.Lock()
        self._store = store
        if store is not None:
            self._restore(store)

    def _restore(self, store: LockoutStore) -> None:
        """Take back what the last run saved, on this run's monotonic clock, and drop from disk
        what has ended (a lockout turned off by `max_refusals = 0` is dropped too)."""
        refusals, locked = store.load()
        now, wall = self._clock(), self._wall()
        for person_id, at in refusals:
            t = _on_this_run(at, now, wall)  # a time in the future (the clock set back) counts as now
            if self.enabled and now - t <= self.window_s:
                self._refusals.setdefault(person_id, deque()).append(t)
        for person_id, until in locked:
            left = min(until - wall, self.lockout_s)  # a clock set back never stretches it
            if self.enabled and left > 0:
                self._until[person_id] = now + left
                self._fresh_from[person_id] = now + left - self.lockout_s
        while len(self._refusals) > MAX_PERSONS:
            self._refusals.popitem(last=False)
        store.write(("DELETE FROM refusal", ()), ("DELETE FROM locked", ()),
                    *[("INSERT INTO refusal (person_id, at) VALUES (?, ?)", (p, self._wall_of(t)))
                      for p, times in self._refusals.items() for t in times],
                    *[("INSERT INTO locked (person_id, until) VALUES (?, ?)", (p, self._wall_of(u)))
                      for p, u in self._until.items()])
        if self._until:
            log.warning("claims of %d person(s) still locked out from before the restart", len(self._until))

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
            others = len(self._other_doors(person_id, now))
            if len(times) + others < self.max_refusals:
                self._refusals[person_id] = times  # most recent last: the oldest is dropped first
                wall = self._wall()
                saved = [("DELETE FROM refusal WHERE person_id = ? AND at < ?", (person_id, wall - self.window_s)),
                         ("INSERT INTO refusal (person_id, at) VALUES (?, ?)", (person_id, wall))]
                if len(self._refusals) > MAX_PERSONS:
                    saved.append(_forget_refusals(self._refusals.popitem(last=False)[0]))
                self._save(*saved)
                return False
            self._lock_out(person_id, now, now + self.lockout_s)
        log.warning("claims for %s refused for %.0f s: %d refused within %.0f s%s", person_id,
                    self.lockout_s, self.max_refusals, self.window_s, f", {others} at other doors" if others else "")
        return True

    def _lock_out(self, person_id: str, start: float, until: float) -> None:
        """Lock `person_id` out until `until`; their count starts again after `start` (under the lock)."""
        self._until[person_id] = until
        self._fresh_from[person_id] = start
        self._refusals.pop(person_id, None)
        self._forget_ended(self._clock())
        self._save(_forget_refusals(person_id),
                   ("INSERT OR REPLACE INTO locked (person_id, until) VALUES (?, ?)",
                    (person_id, self._wall_of(until))))

    def _wall_of(self, t: float) -> float:
        """The wall-clock time of `t` (this run's monotonic clock): what is saved on disk."""
        return self._wall() - (self._clock() - t)

    def _other_doors(self, person_id: str, now: float) -> list[float]:
        """The other doors' refusals of `person_id` that count now (under the lock)."""
        fresh = self._fresh_from.get(person_id, -float("inf"))
        return [t for t in self._remote.get(person_id, ()) if t > fresh and now - t <= self.window_s]

    def remote_since(self) -> float | None:
        """From when the other doors' refusals and the hub's lifts matter (a Unix time: the
        window, or a lockout's length if longer), or None with the limit off."""
        return self._wall() - max(self.window_s, self.lockout_s) if self.enabled else None

    def other_doors(self, refusals: Sequence[tuple[str, float]], lifts: Sequence[tuple[str, float]] = ()) -> None:
        """The refusals the site's other doors made and the lockouts lifted on the hub, (person,
        wall time) as the hub sent them. A lift ends a lockout that started before it and starts
        the person's count again. The refusals replace the last sync's, and a person whose
        refusals here and there reach `max_refusals` within the window is locked out until
        `lockout_s` after the last one. A time in the future (another clock ahead) counts as now."""
        if not self.enabled:
            return
        now, wall = self._clock(), self._wall()
        remote: dict[str, list[float]] = {}
        for person_id, at in refusals:
            t = _on_this_run(at, now, wall)
            if now - t <= self.window_s:
                remote.setdefault(person_id, []).append(t)
        locked = []
        with self._lock:
            for person_id, at in lifts:
                self._lift(person_id, _on_this_run(at, now, wall))
            kept_s = max(self.window_s, self.lockout_s)  # older than any refusal, lockout or lift that matters
            for person_id in [p for p, t in self._fresh_from.items() if now - t > kept_s]:
                del self._fresh_from[person_id]
            self._remote = remote
            for person_id in remote:
                counted = [*self._other_doors(person_id, now),
                           *(t for t in self._refusals.get(person_id, ()) if now - t <= self.window_s)]
                last = max(counted, default=now)
                if (len(counted) >= self.max_refusals and last + self.lockout_s > now
                        and self._until.get(person_id, 0.0) <= now):
                    self._lock_out(person_id, last, last + self.lockout_s)
                    locked.append((person_id, last + self.lockout_s - now))
        for person_id, left in locked:
            log.warning("claims for %s refused for %.0f s: %d refused within %.0f s at this door and others",
                        person_id, left, self.max_refusals, self.window_s)

    def _lift(self, person_id: str, at: float) -> None:
        """A lift made at `at` (this run's clock): the lockout it followed ends, the refusals
        before it no longer count; one seen before changes nothing (under the lock)."""
        if at <= self._fresh_from.get(person_id, -float("inf")):
            return
        self._fresh_from[person_id] = at
        until = self._until.get(person_id)
        ended = until is not None and until - self.lockout_s <= at
        if ended:
            del self._until[person_id]
        times = self._refusals.get(person_id) or deque()
        forgotten = 0
        while times and times[0] <= at:
            times.popleft()
            forgotten += 1
        if forgotten and not times:
            del self._refusals[person_id]
        if ended or forgotten:  # else nothing to write (each restart's first sync sees every lift again)
            self._save(("DELETE FROM refusal WHERE person_id = ? AND at <= ?", (person_id, self._wall_of(at))),
                       *([("DELETE FROM locked WHERE person_id = ?", (person_id,))] if ended else []))
        if ended:
            log.warning("claims for %s: lockout lifted on the hub; their count starts again", person_id)

    def admitted(self, person_id: str) -> None:
        """A claim of `person_id` was admitted: their count starts again (the other doors'
        refusals before it no longer count)."""
        with self._lock:
            self._fresh_from[person_id] = self._clock()
            if len(self._fresh_from) > MAX_PERSONS:
                del self._fresh_from[next(iter(self._fresh_from))]
            if self._refusals.pop(person_id, None) is not None:
                self._save(_forget_refusals(person_id))

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

    def _save(self, *statements: tuple[str, tuple]) -> None:
        if self._store is not None:
            self._store.write(*statements)

    def close(self) -> None:
        if self._store is not None:
            with self._lock:
                self._store.close()
                self._store = None

    def health(self) -> dict:
        with self._lock:
            self._forget_ended(self._clock())
            return {"max_refusals": self.max_refusals, "locked_out": len(self._until)}
