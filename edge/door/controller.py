"""One door's state machine: when the lock opens, for how long, and which alarms the door raises.

    locked ─grant/exit─► unlocked ─contact opens─► open ─contact closes─► locked
       │                    └─ unlock time over ─► locked
       └─contact opens, no grant, no exit request─► forced (alarm until it closes)
    open longer than held_open_s ─► held (pre-alarm first, alarm until it closes)

The controller speaks unlock / lock; which relay level that is comes from the declared lock
type (`relay_level`): fail-secure locks are energised to unlock, fail-safe ones to lock.

No thread, no timer, no sleep: time is the injected monotonic `clock`; the daemon's main loop
calls `tick()` on every turn and the backend's inputs arrive through `on_input` (its own
thread; a lock keeps the two apart). What happened is queued as events for the daemon to take
(`take_events`): the controller never blocks on a network or a disk.

Safety rules, each a test in tests/door: starting locks; a backend error leaves or puts the
door locked; grants following each other never keep the lock open past `max_unlock_s`; a
flapping input is rate limited; a stuck exit button is ignored until it is released.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Callable

from edge.core.credentials import Credential
from edge.door.interface import DoorInput, DoorIO, DoorIOError, GrantNotice, InputKind

log = logging.getLogger("edge.door")

EVENTS_MAX = 1000  # events waiting for the daemon; beyond, the oldest go (counted)


class DoorMode(StrEnum):
    NORMAL = "normal"  # the access rules grant
    LOCKED_DOWN = "locked_down"  # nobody is granted, exit requests do not unlock
    UNLOCKED = "unlocked"  # the lock stays open (set explicitly at run time, never at start)


class DoorState(StrEnum):
    LOCKED = "locked"
    UNLOCKED = "unlocked"
    OPEN = "open"
    HELD = "held"
    FORCED = "forced"


def relay_level(unlocked: bool, lock_type: str) -> bool:
    """The relay level (energised) that makes a lock of `lock_type` unlocked or locked."""
    return unlocked if lock_type == "fail-secure" else not unlocked


@dataclass(frozen=True)
class DoorTiming:
    unlock_s: float = 3.0
    max_unlock_s: float = 10.0
    relock_on_open: bool = True
    open_grace_s: float = 1.0
    held_open_s: float = 30.0
    held_prealarm_s: float = 10.0
    exit_unlocks: bool = True
    exit_stuck_s: float = 30.0
    input_events_max: int = 10
    input_events_window_s: float = 10.0

    @classmethod
    def from_settings(cls, s: Any) -> DoorTiming:
        return cls(**{f: getattr(s, f) for f in cls.__dataclass_fields__})


def no_credentials(person_id: str) -> tuple[Credential, ...]:
    return ()


class DoorController:
    def __init__(self, io: DoorIO, *, door: str = "main", lock_type: str = "fail-secure",
                 timing: DoorTiming | None = None, mode: DoorMode = DoorMode.NORMAL,
                 clock: Callable[[], float] = time.monotonic,
                 credentials_of: Callable[[str], tuple[Credential, ...]] = no_credentials):
        if mode is DoorMode.UNLOCKED:
            raise ValueError("a door never starts unlocked: set_mode(UNLOCKED) once it runs")
        self.io, self.door, self.lock_type = io, door, lock_type
        # A backend whose panel drives the relay (OSDP with relay = "panel") says so with a true
        # `relay_by_panel` attribute: grants are then only announced to the panel.
        self.relay_by_panel = bool(getattr(io, "relay_by_panel", False))
        self.t = timing or DoorTiming()
        self.mode: DoorMode = mode
        self.clock = clock
        self.credentials_of = credentials_of
        self._lock = threading.RLock()
        self._events: deque[dict[str, Any]] = deque(maxlen=EVENTS_MAX)
        self.events_dropped = 0
        # What the controller believes; the relay follows `unlocked` (see _drive).
        self.unlocked = False
        self.unlock_until = 0.0  # while unlocked: when the grant's time is over
        self.unlock_since: float | None = None  # start of the current unbroken unlock (the bound)
        self.authorised_until = 0.0  # a contact opening before this is a passage, not forced
        # After an unlock reached max_unlock_s, grants re-arm only once they pause for unlock_s:
        # else a stream of accepts would relock for an instant and unlock again.
        self.rearm_at = 0.0
        self.contact_open = False
        self.opened_at: float | None = None
        self.forced = False
        self.forced_count = 0
        self.prealarm = False
        self.held = False
        self.tamper = False
        self.exit_pressed_at: float | None = None
        self.exit_stuck = False
        self.relay_fault = ""  # the last backend error while it lasts ("" once the relay obeys)
        self.relay_errors = 0
        self._relay_wanted: bool | None = None  # a level the backend refused: retried each tick
        self._input_times: dict[InputKind, deque[float]] = {}
        self._flapping: dict[InputKind, float] = {}  # input -> until when its events are muted
        self._clearing_muted = False  # an alarm's clearing fell in a contact's muted time
        self._report_times: dict[str, deque[float]] = {}  # a backend's event kind -> when, lately
        self.suppressed = 0
        self.started = False
        self.closed = False  # after close() nothing drives the relay to unlock again

    # -- life -------------------------------------------------------------------------------
    def start(self) -> None:
        """Lock (whatever the relay was), then listen to the inputs: starting never unlocks."""
        with self._lock:
            self._drive(False, "start")
            self.started = True
        self.io.start(self.on_input)
        self._emit("door_state", reason="start")

    def close(self) -> None:
        """Lock and release the backend (a released fail-safe relay unlocks: docs/door.md)."""
        with self._lock:
            self._drive(False, "stop")
            self.closed = True
        try:
            self.io.close()
        except Exception as exc:  # stopping must finish
            log.error("door %s: closing the %s backend failed: %s", self.door, self.io.name, exc)

    # -- commands ---------------------------------------------------------------------------
    def grant(self, person_id: str, reason: str, *, event_id: str = "", source: str = "face") -> bool:
        """Unlock for `unlock_s` (never past `max_unlock_s` of unbroken unlock, and not again
        until grants pause for `unlock_s`); False when the door cannot be unlocked (mode, the
        bound, a relay fault)."""
        with self._lock:
            now = self.clock()
            if self.closed:  # a grant racing a stop (cmd/unlock on the broker's thread)
                return False
            if self.mode is DoorMode.LOCKED_DOWN:
                self._emit("deny", person_id=person_id, reason="locked_down", decision_event_id=event_id)
                return False
            if self.relay_by_panel:
                opened = False  # the panel decides: _grant_by_panel below, outside the lock
            elif now < self.rearm_at and self.mode is DoorMode.NORMAL:
                self.rearm_at = now + self.t.unlock_s  # the stream goes on: still not re-armed
                self._emit("deny", person_id=person_id, reason="max_unlock", decision_event_id=event_id)
                opened = False
            else:
                opened = self._unlock(now, self.t.unlock_s, source)
            if opened:
                self._emit("grant", person_id=person_id or None, reason=reason, unlock_s=self._unlock_s(now),
                           decision_event_id=event_id, source=source)
        if self.relay_by_panel:
            return self._grant_by_panel(person_id, reason, event_id, source)
        if opened and source == "face":
            self._announce(GrantNotice(event_id, person_id, self._credentials(person_id)))
        self._indicate("granted" if opened else "denied")
        return opened

    def _grant_by_panel(self, person_id: str, reason: str, event_id: str, source: str) -> bool:
        """OSDP relay = "panel": a face grant goes to the panel as the person's card read; the
        panel's output command (a PANEL_RELAY input) moves the relay, never the grant itself.
        Another grant (remote unlock) has no card to send: refused, the panel decides."""
        if source != "face":
            self.deny(person_id, "relay_by_panel", event_id=event_id)
            return False
        if not self._announce(GrantNotice(event_id, person_id, self._credentials(person_id))):
            self.deny(person_id, "panel_unreachable", event_id=event_id)
            return False
        with self._lock:
            self._emit("grant", person_id=person_id or None, reason=reason, unlock_s=None,
                       decision_event_id=event_id, source=source, relay="panel")
        self._indicate("granted")
        return True

    def report(self, kind: str, **fields: Any) -> None:
        """A backend's own event (the OSDP panel's link, LED, buzzer, text, keyset) on the door's
        event path; any thread. Panel commands are rate limited per kind (a chatty panel must not
        flood the outbox): beyond input_events_max per window they are counted, not published."""
        with self._lock:
            if kind.startswith("panel_") and kind not in ("panel_link", "panel_keyset", "panel_fault"):
                now = self.clock()
                times = self._report_times.setdefault(kind, deque())
                while times and now - times[0] > self.t.input_events_window_s:
                    times.popleft()
                if len(times) >= self.t.input_events_max:
                    self.suppressed += 1
                    return
                times.append(now)
            self._emit(kind, **fields)

    def deny(self, person_id: str, reason: str, *, event_id: str = "") -> None:
        with self._lock:
            self._emit("deny", person_id=person_id or None, reason=reason, decision_event_id=event_id)
        self._indicate("denied")

    def alarm(self, person_id: str, reason: str, *, event_id: str = "") -> None:
        """An alarm the rules raised (a duress person: `reason` = "duress"); the lock is not
        touched, whatever the verdict did with it."""
        with self._lock:
            self._emit("alarm", person_id=person_id or None, reason=reason, decision_event_id=event_id)
        self._indicate("alarm")

    def set_mode(self, mode: DoorMode, why: str = "") -> None:
        with self._lock:
            if mode is self.mode:
                return
            self.mode = mode
            now = self.clock()
            if mode is DoorMode.UNLOCKED:
                self._drive(True, "mode unlocked")
                if self.unlocked:
                    self.unlock_since, self.unlock_until = now, float("inf")
                    self.authorised_until = float("inf")
            else:
                self._lock_now(now, f"mode {mode}")
            self._emit("mode", mode=str(mode), reason=why or None)

    # -- inputs (backend thread) ------------------------------------------------------------
    def on_input(self, event: DoorInput) -> None:
        """Never raises into the backend's thread."""
        try:
            with self._lock:
                self._input(event, self.clock())
        except Exception:
            log.exception("door %s: input %s could not be handled", self.door, event.kind)

    def _input(self, e: DoorInput, now: float) -> None:
        if e.kind is InputKind.CONTACT:
            if e.active == self.contact_open:
                return
            self.contact_open = e.active
            if e.active and e.detail.get("initial"):
                # Open when the edge started: nobody can say whether it was forced; the held-open
                # alarm follows if it stays open.
                self.opened_at = now
                self._emit("door_open", reason="open_at_start")
            elif e.active:
                self._opened(now)
            else:
                self._closed(now)
        elif e.kind is InputKind.EXIT:
            if e.active and e.detail.get("initial"):
                # Pressed when the edge started (held, or a short): taken as stuck, not as a
                # request: it unlocked the door at every start, before the start's own state.
                self.exit_pressed_at, self.exit_stuck = now, True
                self._emit("exit_stuck", held_s=0.0, reason="pressed_at_start")
            else:
                self._exit(e.active, now)
        elif e.kind is InputKind.TAMPER:
            if e.active != self.tamper:
                self.tamper = e.active
                if self._rate_ok(InputKind.TAMPER, now):
                    self._emit("tamper", active=e.active)
                if e.active:
                    self._indicate("alarm")
        elif e.kind is InputKind.PANEL_RELAY:
            if e.active and self.mode is not DoorMode.LOCKED_DOWN:
                if self._unlock(now, min(e.duration_s or self.t.unlock_s, self.t.max_unlock_s), "panel"):
                    self._emit("grant", person_id=None, reason="panel", unlock_s=self._unlock_s(now), source="panel")
            elif not e.active and self.mode is not DoorMode.UNLOCKED:
                self._lock_now(now, "panel")

    def _opened(self, now: float) -> None:
        self.opened_at = now
        authorised = self.unlocked or now <= self.authorised_until
        if authorised:
            if self._rate_ok(InputKind.CONTACT, now):
                self._emit("door_open")
            if self.t.relock_on_open and self.unlocked and self.mode is not DoorMode.UNLOCKED:
                self._lock_now(now, "door opened", grace=False)
        else:
            self.forced = True
            self.forced_count += 1
            # An alarm; a contact flapping (a loose wire) mutes its repeats behind one
            # `input_flapping` event, the state stays `forced` while the contact reads open.
            if self._rate_ok(InputKind.CONTACT, now):
                self._emit("forced_open")
            self._indicate("alarm")

    def _closed(self, now: float) -> None:
        was = self.forced or self.held or self.prealarm
        self.forced = self.held = self.prealarm = False
        self.opened_at = None
        self.authorised_until = min(self.authorised_until, now)  # one passage per grant
        # Rate limited like every change: a clearing went past the limit, and a contact loop
        # flapped by hand (a magnet at the reed) on a locked door, each opening forced, made
        # a door_closed event per cycle. A clearing muted is said once the flapping ends.
        if self._rate_ok(InputKind.CONTACT, now):
            self._emit("door_closed", alarm_cleared=was)
        elif was:
            self._clearing_muted = True

    def _exit(self, pressed: bool, now: float) -> None:
        if not pressed:
            if self.exit_stuck:
                self._emit("exit_released")
            self.exit_pressed_at, self.exit_stuck = None, False
            return
        if self.exit_stuck or self.exit_pressed_at is not None:
            return  # still held (or stuck): one press, one request
        self.exit_pressed_at = now
        if not self._rate_ok(InputKind.EXIT, now):
            # A chattering button (a loose wire, a hand on it, the pair shorted from outside):
            # one input_flapping, then nothing: no unlock, no request, no opening authorised.
            # In locked_down mode and with the panel's relay its requests went out first, one
            # event per press, each authorising the next opening (a forced one read as allowed).
            return
        if self.mode is DoorMode.LOCKED_DOWN:
            # Free egress is mechanical (docs/door.md); the opening is still not forced.
            self.authorised_until = max(self.authorised_until, now + self.t.unlock_s)
            self._emit("exit_request", unlocked=False, reason="locked_down")
            return
        if self.relay_by_panel:
            # The panel hears the button (OSDP input status) and moves the relay if it wants.
            self.authorised_until = max(self.authorised_until, now + self.t.unlock_s)
            self._emit("exit_request", unlocked=False, reason="relay_by_panel")
            return
        if self.t.exit_unlocks and now < self.rearm_at and self.mode is DoorMode.NORMAL:
            # as a grant: after max_unlock_s of unbroken unlock, not again until presses pause
            self.rearm_at = now + self.t.unlock_s
            self._emit("exit_request", unlocked=False, reason="max_unlock")
            return
        if self.t.exit_unlocks:
            self._unlock(now, self.t.unlock_s, "exit")
        else:
            self.authorised_until = max(self.authorised_until, now + self.t.unlock_s)
        self._emit("exit_request", unlocked=self.t.exit_unlocks and self.unlocked)

    # -- time -------------------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Called by the daemon's main loop on every turn (also without a frame)."""
        with self._lock:
            now = self.clock() if now is None else now
            if self._relay_wanted is not None:
                self._drive(self._relay_wanted, "retry")
            if self.unlocked and self.mode is not DoorMode.UNLOCKED:
                bound = (self.unlock_since or now) + self.t.max_unlock_s
                if now >= bound:
                    self.rearm_at = now + self.t.unlock_s
                    self._lock_now(now, "max_unlock_s reached")
                elif now >= self.unlock_until:
                    self._lock_now(now, "time over")
            if self.contact_open and self.opened_at is not None and not self.forced \
                    and self.mode is not DoorMode.UNLOCKED:
                open_s = now - self.opened_at
                if not self.prealarm and self.t.held_prealarm_s and \
                        open_s >= self.t.held_open_s - self.t.held_prealarm_s:
                    self.prealarm = True
                    self._emit("held_open_prealarm", open_s=round(open_s, 1))
                if not self.held and open_s >= self.t.held_open_s:
                    self.held = True
                    self._emit("held_open", open_s=round(open_s, 1))
                    self._indicate("alarm")
            if self.exit_pressed_at is not None and not self.exit_stuck \
                    and now - self.exit_pressed_at >= self.t.exit_stuck_s:
                self.exit_stuck = True
                self._emit("exit_stuck", held_s=round(now - self.exit_pressed_at, 1))
            for kind, until in list(self._flapping.items()):
                if now >= until:
                    del self._flapping[kind]
                    self._emit("input_flapping", input=str(kind), active=False)  # its events are heard again
            if self._clearing_muted and InputKind.CONTACT not in self._flapping and self.opened_at is None:
                self._clearing_muted = False
                self._emit("door_closed", alarm_cleared=True, after_flapping=True)

    # -- the relay --------------------------------------------------------------------------
    def _unlock_s(self, now: float) -> float | None:
        """What a grant event says of its time: None in unlocked mode (no end: Infinity is no
        JSON, and the access log refused the record of such a grant)."""
        left = self.unlock_until - now
        return round(left, 3) if left != float("inf") else None

    def _credentials(self, person_id: str) -> tuple:
        """The person's credentials for the panel; () when they cannot be read: the door is open
        by then, and an exception here lost the grant's record and event."""
        try:
            return tuple(self.credentials_of(person_id))
        except Exception:
            log.exception("door %s: the credentials of %s could not be read; no card is sent", self.door, person_id)
            return ()

    def _unlock(self, now: float, seconds: float, why: str) -> bool:
        if self.mode is DoorMode.UNLOCKED:
            return self.unlocked
        if not self.unlocked:
            if not self._drive(True, why):
                return False
            self.unlock_since = now
            self.unlock_until = now
        # A new grant extends the unlock, never past the bound of the unbroken unlock.
        bound = (self.unlock_since or now) + self.t.max_unlock_s
        self.unlock_until = min(max(self.unlock_until, now + seconds), bound)
        self.authorised_until = max(self.authorised_until, self.unlock_until + self.t.open_grace_s)
        return True

    def _lock_now(self, now: float, why: str, *, grace: bool = True) -> None:
        if not self.unlocked and self._relay_wanted is None:
            return
        self._drive(False, why)
        self.unlock_since = None
        self.unlock_until = 0.0
        if grace:
            self.authorised_until = min(self.authorised_until, now + self.t.open_grace_s)

    def _drive(self, unlocked: bool, why: str) -> bool:
        """Set the relay for `unlocked`; on a backend error the door is taken as locked when
        asked to unlock (it is, or it fails that way), and locking is retried each tick.
        Closed, it unlocks for nothing (every unlock path comes here)."""
        if unlocked and self.closed:
            return False
        try:
            self.io.set_relay(relay_level(unlocked, self.lock_type))
        except Exception as exc:  # DoorIOError, or any bug of a backend: never an open door
            self.relay_errors += 1
            first = not self.relay_fault
            self.relay_fault = f"{type(exc).__name__}: {exc}" if isinstance(exc, DoorIOError) \
                else f"{type(exc).__name__}"
            if first or self.relay_errors & (self.relay_errors - 1) == 0:
                log.error("door %s: relay %s (%s) failed: %s (%d errors)", self.door,
                          "unlock" if unlocked else "lock", why, self.relay_fault, self.relay_errors)
            if first:
                self._emit("relay_fault", error=self.relay_fault, action="unlock" if unlocked else "lock")
            if unlocked:
                self._relay_wanted = False  # make sure it is locked: retried each tick
                self.unlocked = False
            else:
                self._relay_wanted = False
                self.unlocked = False  # what we want; the fault says we could not confirm it
            return False
        if self.relay_fault:
            log.warning("door %s: relay obeys again after %d errors", self.door, self.relay_errors)
            self._emit("relay_ok")
        self.relay_fault = ""
        self._relay_wanted = None
        changed = self.unlocked != unlocked
        self.unlocked = unlocked
        if changed and self.started:
            self._emit("door_state", reason=why)
        return True

    # -- state and events ------------------------------------------------------------------
    @property
    def state(self) -> DoorState:
        if self.forced:
            return DoorState.FORCED
        if self.held:
            return DoorState.HELD
        if self.contact_open:
            return DoorState.OPEN
        return DoorState.UNLOCKED if self.unlocked else DoorState.LOCKED

    def snapshot(self) -> dict[str, Any]:
        """The retained door state topic's payload (edge/schemas/door-state.schema.json)."""
        with self._lock:
            return {"door": self.door, "state": str(self.state), "mode": str(self.mode),
                    "locked": not self.unlocked, "contact": "open" if self.contact_open else "closed",
                    "tamper": self.tamper, "alarm": self.forced or self.held,
                    "prealarm": self.prealarm and not self.held}

    def faults(self) -> list[str]:
        out = []
        if self.relay_fault:
            out.append(f"relay: {self.relay_fault}")
        if self.exit_stuck:
            out.append("exit button stuck")
        out += [f"{kind} input flapping" for kind in self._flapping]
        if self.tamper:
            out.append("tamper")
        return out

    def health(self) -> dict[str, Any]:
        # The backend's health outside the controller's lock: a backend thread may hold its own
        # lock while it hands the controller an input (OSDP: a panel command inside libosdp's
        # refresh), so taking the two in the other order here could deadlock.
        backend: dict[str, Any]
        try:
            backend = dict(self.io.health())
        except Exception as exc:
            backend = {"status": "error", "error": type(exc).__name__}
        with self._lock:
            faults = self.faults()
            return {**self.snapshot(), "backend": {"name": self.io.name, **backend},
                    "lock_type": self.lock_type, "relay_errors": self.relay_errors,
                    "faults": faults, "events_suppressed": self.suppressed,
                    # events lost because the loop did not take them in time (the queue's bound)
                    "events_dropped": self.events_dropped,
                    "status": "ok" if not faults and backend.get("status", "ok") == "ok" else "degraded"}

    def take_events(self) -> list[dict[str, Any]]:
        """The events since the last call, oldest first (each with the door's state then)."""
        with self._lock:
            out = list(self._events)
            self._events.clear()
            return out

    def _emit(self, kind: str, **fields: Any) -> None:
        # no id is no id: a remote unlock has no person and no decision ("" read as a name)
        fields = {k: None if k in ("person_id", "decision_event_id") and v == "" else v for k, v in fields.items()}
        if len(self._events) == self._events.maxlen:
            self.events_dropped += 1
        # stamped now, not when the main loop publishes it: an alarm raised while the loop was
        # held up carried the loop's later time, after the decision that had held it
        stamp = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        self._events.append({"kind": kind, "door": self.door, **fields, "door_state": self.snapshot(),
                             "timestamp": stamp})

    def _rate_ok(self, kind: InputKind, now: float) -> bool:
        """At most input_events_max events per input per window; then one `input_flapping`
        and silence until a window passes without flapping."""
        times = self._input_times.setdefault(kind, deque())
        times.append(now)
        while times and now - times[0] > self.t.input_events_window_s:
            times.popleft()
        if kind in self._flapping:
            self._flapping[kind] = now + self.t.input_events_window_s
            self.suppressed += 1
            return False
        if len(times) > self.t.input_events_max:
            self._flapping[kind] = now + self.t.input_events_window_s
            self.suppressed += 1
            log.warning("door %s: %s input flapping (%d changes in %.0f s): its events are muted",
                        self.door, kind, len(times), self.t.input_events_window_s)
            self._emit("input_flapping", input=str(kind), changes=len(times))
            return False
        return True

    def _announce(self, notice: GrantNotice) -> bool:
        try:
            self.io.announce_grant(notice)
        except Exception as exc:
            # A DoorIOError's message is the backend's own (no card number, no key); anything
            # else is a bug: its type only.
            error = f"DoorIOError: {exc}" if isinstance(exc, DoorIOError) else type(exc).__name__
            log.error("door %s: announcing the grant to the panel failed: %s", self.door, error)
            with self._lock:
                self._emit("panel_fault", error=error)
            return False
        return True

    def _indicate(self, what: str) -> None:
        try:
            self.io.indicate(what)
        except Exception as exc:  # feedback is best effort
            log.warning("door %s: indicate %s failed: %s", self.door, what, type(exc).__name__)
