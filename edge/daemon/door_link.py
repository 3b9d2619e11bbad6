"""The daemon's side of the door: a published decision becomes an `AccessRequest` (with a
strict `accept`), the access rules' verdict drives the `DoorController`, and what the door did
goes out as events through the durable outbox and as a retained state topic.

    <prefix>/<device>/door/<door>/event    one per grant, deny, exit request, alarm, tamper,
                                           fault, state change, and what the site's panel said
                                           (OSDP link, LED, buzzer, text, keyset; the backend's
                                           `on_event` -> DoorController.report)
                                           (edge/schemas/door-event.schema.json)
    <prefix>/<device>/door/<door>/state    retained: locked/unlocked/open/held/forced, tamper, alarm
    <prefix>/<device>/door/<door>/command  out, backend mqtt only (edge.door.backends.mqtt)

`accept` is true only for an accept of the shipped policy: decision accept, no refusal reason
(an attack), live where `[liveness] mode = "require"`, not stale (frame to decision within
`[policy] stale_accept_s`), a person this device knows, and not from the offline policy unless
`[door] open_on_offline_allow` (docs/door.md#which-decisions-open-the-door).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Callable

from edge.core.domain import Decision, Source
from edge.daemon.decision_event import new_event
from edge.door.controller import DoorController, DoorMode, DoorTiming
from edge.door.interface import AccessRequest, Outcome
from edge.door.rules import GroupRules, NoHistory

if TYPE_CHECKING:
    from edge.core.credentials import Credential
    from edge.core.matcher import Gallery
    from edge.daemon.config import EdgeSettings
    from edge.daemon.decide import Outcome as Decided
    from edge.daemon.publisher import Publisher

log = logging.getLogger("edge.daemon")


def strict_accept(out: Decided, *, liveness_mode: str, stale_s: float, decided_s: float | None,
                  offline_allow_opens: bool) -> tuple[bool, str]:
    """Whether `out` may open a door, and why not ("" when it may)."""
    if out.reason is not None:  # said first: "presentation_attack" explains a reject
        return False, out.reason
    if out.decision is not Decision.ACCEPT:
        return False, f"decision_{out.decision}"
    if out.unknown_person or not out.person_id:
        return False, "unknown_person"
    if liveness_mode == "require" and (out.liveness is None or out.liveness.verdict != "live"):
        return False, "not_live"
    if stale_s > 0 and decided_s is not None and decided_s > stale_s:
        return False, "stale"
    if out.source is Source.OFFLINE_POLICY and not offline_allow_opens:
        return False, "offline_policy"
    return True, ""


def groups_of(gallery: Gallery, person_id: str) -> tuple[str, ...]:
    """The groups of `person_id`'s faces in the synced gallery."""
    return tuple(sorted({g for f in gallery.faces if f.person_id == person_id for g in f.group_ids}))


class DoorLink:
    """Owns the door's controller and rules; the main loop calls `decided` and `tick`."""

    def __init__(self, s: EdgeSettings, controller: DoorController, events: Publisher,
                 gallery: Callable[[], Gallery]):
        self.s, self.door, self.events, self.gallery = s, controller, events, gallery
        groups = s.door.groups or s.identify.groups
        self.rules = GroupRules(groups, lambda door: str(self.door.mode))
        self.history = NoHistory()
        self._last_state: dict[str, Any] | None = None
        self.published = 0
        self.closed = False

    @classmethod
    def from_settings(cls, s: EdgeSettings, events: Publisher, gallery: Callable[[], Gallery], *,
                      credentials_of: Callable[[str], tuple[Credential, ...]] | None = None,
                      pin_factory: Any = None) -> DoorLink:
        from edge.door.backends import make_door_io
        from edge.door.controller import no_credentials

        built: list[DoorController] = []  # the backend exists before its controller

        def backend_event(kind: str, fields: dict[str, Any]) -> None:
            if built:  # a backend reports only once started, after the controller is built
                built[0].report(kind, **fields)

        io = make_door_io(s.door, send=events.publish_direct if s.mqtt.enabled else None,
                          pin_factory=pin_factory, on_event=backend_event)
        controller = DoorController(io, door=s.door.name, lock_type=s.door.lock_type,
                                    timing=DoorTiming.from_settings(s.door), mode=DoorMode(s.door.mode),
                                    credentials_of=credentials_of or no_credentials)
        built.append(controller)
        return cls(s, controller, events, gallery)

    def start(self) -> None:
        self.door.start()
        self.tick()

    def decided(self, out: Decided, event: dict[str, Any], decided_s: float | None) -> None:
        """After the decision `event` was published: the rules' verdict drives the door."""
        if self.closed:  # the last tracks settled while stopping: the door stays locked
            return
        s = self.s
        ok, why = strict_accept(out, liveness_mode=s.liveness.mode, stale_s=s.policy.stale_accept_s,
                                decided_s=decided_s, offline_allow_opens=s.door.open_on_offline_allow)
        person = out.person_id or ""
        request = AccessRequest(event_id=event["event_id"], door=s.door.name, person_id=person,
                                groups=groups_of(self.gallery(), person) if ok else (),
                                decision=str(out.decision), source=str(out.source), accept=ok,
                                at=time.time(), evidence={"score": out.score, "why_not": why or None})
        verdict = self.rules.evaluate(request, self.history)
        if verdict.outcome is Outcome.GRANT:
            self.door.grant(person, verdict.reason, event_id=request.event_id)
        elif ok or person:  # a face nobody knows is no door event; a known one refused is
            self.door.deny(person, verdict.reason if ok else f"{verdict.reason}:{why}",
                           event_id=request.event_id)
        self.flush()

    def remote_unlock(self, who: str) -> bool:
        return self.door.grant("", "remote_unlock", source=f"remote:{who}")

    def tick(self) -> None:
        self.door.tick()
        self.flush()

    def flush(self) -> None:
        """The door's events to the outbox, and its state (retained) when it changed."""
        for e in self.door.take_events():
            e = {k: v for k, v in e.items() if v is not None}
            self.events.publish_event(new_event(device=self.s.device.id, **e), leaf=f"door/{self.s.door.name}/event")
            self.published += 1
            if e["kind"] in ("grant", "forced_open", "held_open", "tamper", "relay_fault", "exit_stuck",
                             "panel_link", "panel_keyset", "panel_fault"):
                log.info("door %s: %s %s", self.s.door.name, e["kind"],
                         " ".join(f"{k}={e[k]}" for k in ("person_id", "reason", "unlock_s", "link", "accepted")
                                  if k in e))
        state = self.door.snapshot()
        if state != self._last_state:
            self._last_state = state
            message = new_event(device=self.s.device.id, **state)
            del message["event_id"]  # a state, not an event
            self.events.publish_retained(f"door/{self.s.door.name}/state", message)

    def health(self) -> dict[str, Any]:
        return self.door.health()

    def close(self) -> None:
        self.closed = True
        self.door.close()
        try:
            self.flush()
        except Exception:  # best effort on the way out
            pass
