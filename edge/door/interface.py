"""The door's contracts (../shared/docs/DESIGN.md, "Door"): what the daemon, the access rules,
the controller and the hardware backends agree on. Values only; no behaviour lives here.

    decision ─► AccessRules.evaluate(request) ─► Verdict (grant | deny | step_up, with a reason)
    grant ─► DoorController ─► DoorIO (relay, card read to the panel)
    DoorIO inputs (contact, exit request, tamper, panel commands) ─► DoorController
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Callable, Protocol

from edge.core.credentials import Credential


class Outcome(StrEnum):
    GRANT = "grant"
    DENY = "deny"
    STEP_UP = "step_up"  # a second factor (card or PIN claim) would decide


@dataclass(frozen=True)
class AccessRequest:
    """One settled decision, as the rules see it. `accept` is true only for an accept of the
    shipped policy: liveness passed where required, not stale, not offline-denied."""
    event_id: str
    door: str
    person_id: str
    groups: tuple[str, ...]
    decision: str  # accept | uncertain | reject | unknown (edge.core.domain.Decision)
    source: str  # local | cloud | offline-policy
    accept: bool
    at: float  # wall-clock seconds (UTC epoch) from the injected clock
    # the person a second factor (a badge or PIN: a verify claim) named for this face, if any;
    # the door link sets it only when it is the decided person (docs/access.md#second-factor)
    claim: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)  # score, liveness, versions: for the log


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reason: str  # "granted", "not_accepted", "not_in_groups", "locked_down", ... (snake_case)
    rule: str | None = None  # which rule allowed or refused it, for the log
    alarm: bool = False  # a duress person: raised whatever the outcome
    warning: str | None = None  # a soft rule that let the grant pass (anti_passback, response soft)
    rules_version: int | None = None  # the synced rule set that decided, for the log

    @property
    def granted(self) -> bool:
        return self.outcome is Outcome.GRANT


class AccessRules(Protocol):
    """Pure: the same request and history give the same verdict; no clock of its own."""

    def evaluate(self, request: AccessRequest, history: "AccessHistory") -> Verdict: ...


class AccessHistory(Protocol):
    """What the rules may ask of the past (anti-passback): the person's last grants at doors."""

    def last_grant(self, person_id: str, door: str | None = None) -> float | None: ...

    def last_door(self, person_id: str, doors: tuple[str, ...]) -> str | None:
        """Which of `doors` the person was last granted at (the last grant written, whatever
        the clock said), None when at none of them."""
        ...


class InputKind(StrEnum):
    CONTACT = "contact"  # active = door open
    EXIT = "exit"  # request to exit pressed
    TAMPER = "tamper"  # active = enclosure opened / wire cut
    PANEL_RELAY = "panel_relay"  # OSDP with relay = "panel": the panel's output command


@dataclass(frozen=True)
class DoorInput:
    kind: InputKind
    active: bool
    at: float  # monotonic seconds (the controller's injected clock)
    duration_s: float | None = None  # PANEL_RELAY: how long the panel wants the relay on
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GrantNotice:
    """What a backend may pass on to the site's panel about a grant (OSDP card read, Wiegand)."""
    event_id: str
    person_id: str
    credentials: tuple[Credential, ...]


class DoorIOError(Exception):
    """A backend could not do what was asked; the controller keeps the door locked and says so."""


class DoorIO(Protocol):
    """One hardware backend: gpio | osdp | mqtt | none. Thread-safe; inputs arrive on the
    backend's own thread through `on_input`, which never raises into it.

    Optional: a true `relay_by_panel` attribute (OSDP with relay = "panel") makes the
    controller announce grants without driving the relay; the panel's PANEL_RELAY input does."""

    name: str

    def start(self, on_input: Callable[[DoorInput], None]) -> None: ...

    def set_relay(self, energised: bool) -> None:
        """Energise (True) or release the lock relay; raises DoorIOError."""

    def announce_grant(self, notice: GrantNotice) -> None:
        """Pass a grant to the panel (card read / Wiegand); a no-op where there is no panel."""

    def indicate(self, what: str) -> None:
        """Local feedback where the hardware has it (LED, buzzer): "granted", "denied", "alarm"."""

    def health(self) -> dict[str, Any]: ...

    def close(self) -> None:
        """Release the relay and free the pins / port; idempotent."""
