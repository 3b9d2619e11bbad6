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

The rules are edge.door.rules_in_force: the hub's synced rules (AccessPolicy, whose schedule
also sets the door's mode on each tick) or, before any were synced, `[door] groups`. Every
decision, the door's events and each change of the rules in force go into the access log
(edge.door.access_log, when given), which is also the rules' anti-passback history.

`accept` is true only for an accept of the shipped policy: decision accept, no refusal reason
(an attack), never judged an attack (in any liveness mode), live where `[liveness] mode =
"require"`, not stale (frame to decision within `[policy] stale_accept_s`), a person this device
knows, and not from the offline policy unless `[door] open_on_offline_allow`
(docs/door.md#which-decisions-open-the-door).
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any, Callable

from edge.core.domain import Decision, Source
from edge.core.syncwire import COUNTED
from edge.daemon.decision_event import new_event
from edge.door.access import NOT_ACCEPTED
from edge.door.access_log import HeadNotSigned
from edge.door.access_records import decision_record, door_event_record, rules_record
from edge.door.clock_sync import kernel_clock_synchronised
from edge.door.controller import DoorController, DoorMode, DoorTiming
from edge.door.interface import AccessHistory, AccessRequest, Outcome, Verdict
from edge.door.rules import GroupRules, NoHistory
from edge.door.rules_in_force import PENDING, RulesInForce

if TYPE_CHECKING:
    from edge.core.access_rules import RuleSet
    from edge.core.credentials import Credential
    from edge.core.domain import Claim
    from edge.core.matcher import Gallery
    from edge.daemon.config import EdgeSettings
    from edge.daemon.decide import Outcome as Decided
    from edge.daemon.publisher import Publisher
    from edge.door.access_log import AccessLog
    from edge.door.access_upload import Uploader
    from edge.door.log_crops import CropSeal

log = logging.getLogger("edge.daemon")

# How often the door's own clock ticks the controller (keep_time), beside the main loop's turns,
# and how often the schedule is applied on its own thread (keep_schedule).
DOOR_CLOCK_S = 0.1
CROP_PRUNE_EVERY_S = 3600.0  # face crops (and, without a hub, records) past [door] log_retention_days go this often
SCHEDULE_EVERY_S = 1.0
# why a scheduled unlocked window was not taken (a mode event's reason, /health's schedule_held)
CLOCK_UNSYNCHRONISED = "clock_unsynchronised"
RELAY_BY_PANEL = "relay_by_panel"  # the OSDP panel drives the relay: its own schedules too


def strict_accept(out: Decided, *, liveness_mode: str, stale_s: float, decided_s: float | None,
                  offline_allow_opens: bool) -> tuple[bool, str]:
    """Whether `out` may open a door, and why not ("" when it may)."""
    if out.reason is not None:  # said first: "presentation_attack" explains a reject
        return False, out.reason
    if out.decision is not Decision.ACCEPT:
        return False, f"decision_{out.decision}"
    if out.unknown_person or not out.person_id:
        return False, "unknown_person"
    if out.liveness is not None and out.liveness.verdict == "attack":
        # `flag` lets an attack's decision stand for the record; a door never opens on one
        return False, "presentation_attack"
    if liveness_mode == "require" and (out.liveness is None or out.liveness.verdict != "live"):
        return False, "not_live"
    if liveness_mode != "off" and (out.liveness is None or out.liveness.verdict is None):
        return False, "no_liveness_verdict"  # flag: a decision before any verdict opens nothing
    if stale_s > 0 and decided_s is not None and decided_s > stale_s:
        return False, "stale"
    if out.source is Source.OFFLINE_POLICY and not offline_allow_opens:
        return False, "offline_policy"
    return True, ""


def face_check(s: EdgeSettings, out: Decided, decided_s: float | None, *,
               offline_allow_opens: bool | None = None) -> tuple[bool, str]:
    """`strict_accept` with this edge's settings (`decided_s` None: the age not judged): the
    door's own check of the face, the access rules not applied."""
    return strict_accept(out, liveness_mode=s.liveness.mode, stale_s=s.policy.stale_accept_s, decided_s=decided_s,
                         offline_allow_opens=(s.door.open_on_offline_allow if offline_allow_opens is None
                                              else offline_allow_opens))


class DoorLink:
    """Owns the door's controller and rules; the main loop calls `decided` and `tick`."""

    def __init__(self, s: EdgeSettings, controller: DoorController, events: Publisher,
                 gallery: Callable[[], Gallery], *, synced_rules: Callable[[], RuleSet | None] = lambda: None,
                 rules_status: Callable[[], dict[str, Any]] = dict, access_log: AccessLog | None = None,
                 crop_seal: CropSeal | None = None, clock_synchronised: Callable[[], bool] | None = None):
        self.s, self.door, self.events, self.gallery = s, controller, events, gallery
        # [door] clock_check: whether the wall clock may open an unlocked window, or date a hub-less
        # door's records past retention (edge.door.clock_sync)
        self.clock_synchronised = clock_synchronised or (
            kernel_clock_synchronised if s.door.clock_check == "kernel" else lambda: True)
        self.schedule_held: str | None = None  # the scheduled mode not taken, while it is not
        self.schedule_held_why: str | None = None  # CLOCK_UNSYNCHRONISED or RELAY_BY_PANEL
        groups = GroupRules(s.door.groups or s.identify.groups, lambda door: str(self.door.mode))
        self.rules = RulesInForce(synced_rules, rules_status, groups, self.clock_synchronised)
        self.access_log = access_log
        self.history: AccessHistory = access_log if access_log is not None else NoHistory()
        self.uploader: Uploader | None = None  # set by the daemon when a hub takes the log
        self.crop_seal = crop_seal  # [door] log_face_crops: the decisions' face crops, sealed
        self._rules_seen: tuple[Any, ...] | None = None
        self._scheduled: tuple[str | None, str | None] | None = None  # the schedule's mode, the mode held back
        self._schedule_lock = threading.Lock()
        self.log_writable, self.log_lost = True, 0  # records the access log could not take
        self._log_retry_at = 0.0
        self._crops_pruned_at = -CROP_PRUNE_EVERY_S  # monotonic: the first tick prunes
        self._records_to_prune = False  # a hub-less prune took a batch: the next tick goes on
        self._last_state: dict[str, Any] | None = None
        # flush runs on the main loop and on the door's publishing thread: one at a time, and a
        # decision's door events are taken and published by the decision itself (decided)
        self._publishing = threading.RLock()
        self.published = 0
        self.closed = False

    @classmethod
    def from_settings(cls, s: EdgeSettings, events: Publisher, gallery: Callable[[], Gallery], *,
                      credentials_of: Callable[[str], tuple[Credential, ...]] | None = None,
                      pin_factory: Any = None, **rules_and_log: Any) -> DoorLink:
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
        return cls(s, controller, events, gallery, **rules_and_log)

    def start(self) -> None:
        """The door locked, the rules in force logged; no scheduled mode yet: starting never
        unlocks (the first `tick` of the main loop applies the schedule)."""
        self.door.start()
        self._note_rules()
        self.door.tick()
        self.flush()

    def decided(self, out: Decided, event: dict[str, Any], decided_s: float | None,
                claim: Claim | None = None, face_crop: bytes | None = None,
                claim_counted: str | None = None) -> None:
        """After the decision `event` was published: the rules' verdict drives the door.

        `claim` is the verify claim (badge, PIN) this decision was made for, if any: it reaches
        the rules as the second factor only when its person is the decided person, so a claim
        for someone else never counts (docs/access.md#second-factor). `face_crop` (a JPEG) is
        kept sealed with the decision's record where the site enables face crops; `claim_counted`
        how the claim's lockout counted it (edge.daemon.claims.Claims.decided), which the record
        says for the site's other doors (edge.hub.claim_refusals)."""
        if self.closed:  # the last tracks settled while stopping: the door stays locked
            return
        s = self.s
        ok, why = face_check(s, out, decided_s)
        # the frame's freshness ends here (perf_counter): judged again when the relay would open
        fresh_until = (time.perf_counter() + s.policy.stale_accept_s - decided_s
                       if s.policy.stale_accept_s > 0 and decided_s is not None else None)
        person = out.person_id or ""
        # groups for an uncertain face too: the synced rules ask for a second factor only where
        # the person could pass now; a face refused before matching (an attack, a withheld
        # decision) or one that is no accept for other reasons is never a candidate for a
        # second factor, whatever its decision says: the rules see a reject (_rules_decision)
        evidence = evidence_of(out, event)
        claimed = claim.person_id if claim is not None and claim.person_id else None
        if claimed is not None and claimed != person:  # logged, never a second factor
            evidence["claim_ignored"], claimed = claimed, None
        if claimed is not None and claim_counted is not None:
            evidence[COUNTED] = claim_counted
        request = AccessRequest(event_id=event["event_id"], door=s.door.name, person_id=person,
                                groups=self.gallery().groups_of(person) if person else (),
                                decision=self._rules_decision(out, decided_s),
                                source=str(out.source), accept=ok, at=time.time(), claim=claimed,
                                evidence=evidence)
        verdict = self.rules.evaluate(request, self.history)
        with self._publishing:  # the decision's own grant or deny goes with its record, not the publisher's turn
            if verdict.granted and fresh_until is not None and time.perf_counter() > fresh_until:
                # the rules' look-up (the cache, held by a sync page) or the publisher's turn (a
                # stalled card) waited past the frame's freshness: whoever is at the door now is
                # not the face that was seen
                verdict = dataclasses.replace(verdict, outcome=Outcome.DENY, reason=NOT_ACCEPTED)
                ok, why = False, "stale"
            self._act_on(request, verdict, ok, person, why, face_crop)

    def _act_on(self, request: AccessRequest, verdict: Verdict, ok: bool, person: str, why: str,
                face_crop: bytes | None) -> None:
        if verdict.outcome is Outcome.GRANT:
            self.door.grant(person, verdict.reason, event_id=request.event_id)
        elif ok or person:  # a face nobody knows is no door event; a known one refused is
            asked = ok or verdict.outcome is Outcome.STEP_UP  # the rules' own reason says it all
            self.door.deny(person, verdict.reason if asked else f"{verdict.reason}:{why}",
                           event_id=request.event_id)
        if verdict.alarm:  # a duress person: granted or not, the alarm goes out
            self.door.alarm(person, "duress", event_id=request.event_id)
        events = self.door.take_events()
        acted = next((e for e in events if e["kind"] in ("grant", "deny")
                      and e.get("decision_event_id") == request.event_id), None)
        self._log("decision", decision_record(request, verdict, door_outcome=acted["kind"] if acted else None,
                                              door_reason=acted.get("reason") if acted else None, why_not=why),
                  face_crop=self._sealed(request.event_id, face_crop))
        self.flush(events)

    def _rules_decision(self, out: Decided, decided_s: float | None) -> str:
        """The face's decision as the rules see it. An uncertain face is a candidate for a second
        factor only when it meets everything else an accept must (live where liveness is
        required, fresh, a person this device knows, not the offline policy's, whatever
        `open_on_offline_allow` says: that opens on the policy's `allow`, never on its
        `uncertain`, which with a stolen badge let a look-alike in while the hub was cut off):
        otherwise a claim would open the door for a face the door would refuse even as an accept."""
        if out.reason is not None:
            return "reject"
        if out.decision is Decision.UNCERTAIN:
            s = self.s
            fit, _ = face_check(s, dataclasses.replace(out, decision=Decision.ACCEPT), decided_s,
                                offline_allow_opens=False)
            return "uncertain" if fit else "reject"
        return str(out.decision)

    def remote_unlock(self, who: str) -> bool:
        """A signed `cmd/unlock`; refused once the door was locked for the stop (the command
        arrives on the broker's thread, which runs until the very end: an unlock then would be
        neither relocked by this edge nor logged)."""
        if self.closed:
            log.warning("door %s: remote unlock by %s refused: the edge is stopping", self.s.door.name, who)
            return False
        return self.door.grant("", "remote_unlock", source=f"remote:{who}")

    def tick(self) -> None:
        if not self.log_writable and time.monotonic() >= self._log_retry_at:
            # a record of the loss is the probe: once it is in, the log is writable again
            self._log_retry_at = time.monotonic() + 5.0
            self._log("door", {"door": self.s.door.name, "reason": "access_log_lost",
                               "detail": {"lost": self.log_lost}})
        if self.access_log is not None:
            self._prune(self.access_log)
        self._note_rules()
        self._apply_schedule()
        self.door.tick()
        self.flush()

    def _prune(self, access_log: AccessLog) -> None:
        """Face crops past retention hourly, whether the hub has their records or not; without a
        hub, the records too, one batch a tick (this is the main loop) until none is left."""
        hourly = time.monotonic() - self._crops_pruned_at >= CROP_PRUNE_EVERY_S
        if not (hourly or self._records_to_prune):
            return
        try:
            if hourly:
                self._crops_pruned_at = time.monotonic()
                access_log.prune_crops()
            # No hub: no upload prunes its records, and this copy is the only one, so only on a
            # clock the kernel calls synchronised: one set years ahead by hand, or a Pi booted on
            # a wrong time, would date every record past retention.
            synchronised = access_log.waits_for_hub or self.clock_synchronised()
            if not synchronised and hourly:  # a door with no NTP to reach: its log only grows
                log.warning("door %s: the access log's records past log_retention_days are kept: the clock is "
                            "not synchronised ([door] clock_check; docs/door.md#unlocked-windows-and-the-clock)",
                            self.s.door.name)
            self._records_to_prune = (not access_log.waits_for_hub and synchronised
                                      and access_log.prune(batches=1) > 0)
        except (sqlite3.Error, OSError) as exc:
            self._records_to_prune = False
            log.error("door %s: the access log's old records or face crops could not be deleted: %s",
                      self.s.door.name, exc)

    def keep_time(self, stop: threading.Event) -> None:
        """The controller's timing on a clock of its own (a thread until `stop`): the relock on
        time, the max_unlock_s bound and the held-open alarms. On the main loop's turns alone
        they waited for whatever the loop was in: a cloud fallback to a hub answering slowly held
        a door unlocked past unlock_s and max_unlock_s. The controller is thread-safe; its events
        wait in its queue for the loop's `tick` to log and publish them.

        Nothing else runs here: whatever this thread waited for would hold a granted door
        unlocked as long (the schedule, read from the local cache that a sync holds for a whole
        page, has a thread of its own: keep_schedule)."""
        self._every(stop, DOOR_CLOCK_S, self.door.tick, "timed tick")

    def keep_publishing(self, stop: threading.Event) -> None:
        """The door's events and state to the access log and the outbox as they happen (a thread
        until `stop`): on the main loop's turns alone they waited for whatever the loop was in,
        and a door relocked while a cloud fallback waited on a hub showed unlocked to every
        consumer (a home-automation lock, the retained state) seconds after it had locked, an
        alarm as late. Apart from the clock: a log or outbox write waiting on the SD card must
        never hold a relock."""
        self._every(stop, DOOR_CLOCK_S, self.flush, "publishing")

    def keep_schedule(self, stop: threading.Event) -> None:
        """The schedule applied once a second (a thread until `stop`), beside the main loop's
        turns: on the loop's turns alone an unlocked window's end waited for a loop held up by
        a slow cloud fallback."""
        self._every(stop, SCHEDULE_EVERY_S, self._apply_schedule, "scheduled mode")

    def _every(self, stop: threading.Event, period_s: float, step: Callable[[], None], what: str) -> None:
        failed = ""
        while not stop.wait(period_s) and not self.closed:
            try:
                step()
                failed = ""
            except Exception as exc:  # the controller locks on its own errors; said once, not each turn
                if repr(exc) != failed:
                    log.exception("door %s: %s failed", self.s.door.name, what)
                failed = repr(exc)

    def _apply_schedule(self) -> None:
        """The synced rules' scheduled mode, when it changes (so a later command could hold
        until the next change). None (no synced rules in force) returns to the config's mode.
        `[door] mode = "locked_down"` is an operator's hold: no schedule lifts it.

        An unlocked window is taken only on a synchronised clock (`[door] clock_check`): a Pi
        booting on a stale time, or on a clock set back or ahead, would otherwise stand open to
        anyone at a time nobody scheduled. The door stays in normal mode (faces still decide)
        until the clock is synchronised; a locked-down window is taken on any clock (it opens
        nothing). With OSDP `relay = "panel"` an unlocked window is never taken: the panel
        drives the relay, on its own schedules (taken, it moved the relay past the panel, and a
        lost link did not lock it); faces still decide, their grants the panel's card reads."""
        if self.closed or self.s.door.mode == "locked_down":
            return
        with self._schedule_lock:  # the main loop's turns and the door's clock both apply it
            target = self.rules.scheduled_mode(self.s.door.name, time.time())
            why = None
            if target == "unlocked":
                why = (RELAY_BY_PANEL if self.door.relay_by_panel
                       else None if self.clock_synchronised() else CLOCK_UNSYNCHRONISED)
            held = target if why else None
            if (target, held) == self._scheduled:
                return
            self._scheduled, self.schedule_held, self.schedule_held_why = (target, held), held, why
            if why == RELAY_BY_PANEL:
                log.info("door %s: the schedule sets the door unlocked; the OSDP panel drives the relay "
                         "(relay = \"panel\"): normal mode here, the panel's own schedule keeps the door",
                         self.s.door.name)
                self.door.set_mode(DoorMode.NORMAL, RELAY_BY_PANEL)
            elif held:
                log.warning("door %s: the schedule sets the door unlocked, but the clock is not synchronised "
                            "([door] clock_check = \"kernel\"): normal mode until it is", self.s.door.name)
                self.door.set_mode(DoorMode.NORMAL, CLOCK_UNSYNCHRONISED)
            else:
                self.door.set_mode(DoorMode(target or self.s.door.mode),
                                   "schedule" if target else "no_synced_rules")

    def _note_rules(self) -> None:
        """A `rules` record (and a log line) whenever the rules in force change."""
        status = self.rules.status()
        seen = (status["in_force"], status["version"], status["refused"])
        if seen == self._rules_seen:
            return
        self._rules_seen = seen
        pending = status["in_force"] == PENDING  # every request denied until the sync brings them
        (log.error if status["rules_invalid"] else log.warning if pending else log.info)(
            "door %s: access rules in force: %s%s%s%s", self.s.door.name, status["in_force"],
            f" version {status['version']}" if status["version"] else "",
            f" (version {status['refused']} refused: {status['error']})" if status["refused"] else "",
            f" (the hub's version {status['hub_version']} not synced yet: every request denied)" if pending else "")
        self._log("rules", rules_record(status))

    def _sealed(self, event_id: str, face_crop: bytes | None) -> bytes | None:
        """The crop sealed for the log, or None (crops off, no face, or a crop that cannot be
        sealed: the record goes in without it)."""
        if self.crop_seal is None or not face_crop:
            return None
        try:
            return self.crop_seal.seal(event_id, face_crop)
        except ValueError as exc:
            log.warning("door %s: the face crop of %s is not kept: %s", self.s.door.name, event_id, exc)
            return None

    def _log(self, kind: str, fields: dict[str, Any], face_crop: bytes | None = None) -> None:
        """Append to the access log; a log that fails is reported, the door goes on (its
        decision is made; the event still goes out)."""
        if self.access_log is None:
            return
        try:
            self.access_log.append(kind, face_crop=face_crop, **fields)
        except (sqlite3.Error, OSError, HeadNotSigned) as exc:  # a full or failing disk, an edited file: said once
            self.log_lost += 1
            if self.log_writable:
                self.log_writable = False
                log.error("door %s: the access log cannot be written (%s): records are lost until it can",
                          self.s.door.name, exc)
            return
        except Exception:  # a bug (a field the log does not know): loud
            self.log_lost += 1
            log.exception("door %s: the access log could not take a %s record", self.s.door.name, kind)
            return
        if not self.log_writable:
            self.log_writable = True
            log.warning("door %s: the access log is writable again (%d record(s) were lost while it was not)",
                        self.s.door.name, self.log_lost)
        if self.uploader is not None:
            self.uploader.trigger()

    def flush(self, events: list[dict[str, Any]] | None = None) -> None:
        """The door's events to the access log and the outbox, and its state (retained) when it
        changed."""
        with self._publishing:
            self._flush(events)

    def _flush(self, events: list[dict[str, Any]] | None) -> None:
        for e in self.door.take_events() if events is None else events:
            e = {k: v for k, v in e.items() if v is not None}
            record = door_event_record(e)
            if record is not None:
                self._log(*record)
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
        """The controller's health, the rules in force and the access log (degraded: rules
        invalid, or the hub refusing the log)."""
        health = self.door.health()
        rules = self.rules.status()
        health["rules"] = rules
        health["schedule"] = {"clock_check": self.s.door.clock_check, "held": self.schedule_held,
                              "why": self.schedule_held_why if self.schedule_held else None}
        if self.access_log is not None:
            try:
                head = (self.access_log.head().get("head") or {}).get("seq", 0)
                uploaded = self.access_log.uploaded
                health["access_log"] = {"records": head, "uploaded": uploaded, "writable": self.log_writable,
                                        "lost": self.log_lost,
                                        "lag": head - uploaded if self.uploader is not None else None,
                                        "upload": _upload_state(self.uploader)}
            except Exception as exc:  # health never fails on a part it reports
                health["access_log"] = {"error": type(exc).__name__}
        access = health.get("access_log") or {}
        upload_refused = (access.get("upload") or {}).get("status") == "refused"
        # a newer version refused leaves the door on older rules: a revocation in it is not in force
        newer_refused = (rules["refused"] or 0) > (rules["version"] or 0)
        if rules["rules_invalid"] or rules["in_force"] == PENDING or upload_refused or "error" in access \
                or not self.log_writable or self.schedule_held_why == CLOCK_UNSYNCHRONISED or newer_refused:
            health["status"] = "degraded"
        return health

    def close(self) -> None:
        self.closed = True
        self.door.close()
        try:
            self.flush()
        except Exception:  # best effort on the way out
            pass


def evidence_of(out: Decided, event: dict[str, Any]) -> dict[str, Any]:
    """What the access log keeps of a decision: score, liveness, the models and the gallery."""
    prints = event.get("fingerprints") or {}
    return {"decision": str(out.decision), "score": out.score,
            "liveness": out.liveness.verdict if out.liveness is not None else None,
            "liveness_score": out.liveness.score if out.liveness is not None else None,
            "model_version": prints.get("pack"), "fingerprints": prints or None,
            "gallery_version": event.get("cache_version")}


def _upload_state(uploader: Uploader | None) -> dict[str, Any] | None:
    if uploader is None:
        return None
    state = dict(uploader.state)
    return {k: state.get(k) for k in ("status", "uploaded", "sent", "refused", "last_error", "last_run")}
