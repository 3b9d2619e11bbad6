"""The access rule evaluator: who may pass which door, when (docs/access.md).

`AccessPolicy` implements the `AccessRules` protocol over the site's rule set (edge/core/
access_rules.py). It is pure: the time is the request's `at` (the daemon's injected clock), the
past is the `AccessHistory` passed in, and the rule set comes from a provider the daemon feeds
from sync. Each rule is one small function below that either decides or passes; the order is
the order of `AccessPolicy.evaluate`. A missing or broken rule set denies (`rules_invalid`):
a door never opens on rules it cannot read.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from edge.core.access_rules import AccessLevel, Door, RuleSet, ScheduledSetting
from edge.door.interface import AccessHistory, AccessRequest, Outcome, Verdict

GRANTED = "granted"
DURESS = "duress"
NOT_ACCEPTED = "not_accepted"
NO_ACCESS_LEVEL = "no_access_level"
OUTSIDE_SCHEDULE = "outside_schedule"
HOLIDAY = "holiday"
LOCKED_DOWN = "locked_down"
ANTI_PASSBACK = "anti_passback"
SECOND_FACTOR_NEEDED = "second_factor_needed"
RULES_INVALID = "rules_invalid"


@dataclass(frozen=True)
class LocalTime:
    """The request's instant in the site's time zone, as the rules read it."""
    minute_of_week: int
    date: dt.date
    holiday: bool  # today's local date is one (a schedule window asks about the day it started)


def local_time(rules: RuleSet, at: float) -> LocalTime:
    """UTC epoch → local wall time: a daylight-saving change shifts the wall clock, never the
    instant, so a schedule is always read against the time a person would see on the wall."""
    t = dt.datetime.fromtimestamp(at, rules.zone)
    return LocalTime(t.weekday() * 1440 + t.hour * 60 + t.minute, t.date(), t.date() in rules.holidays)


def window_on_holiday(rules: RuleSet, now: LocalTime, since_start: int) -> bool:
    """Whether the schedule window that started `since_start` minutes before `now` started on a
    holiday. A window belongs to the day it starts: a Friday-night window on a Friday holiday
    does not open at midnight into Saturday, and Thursday's night shift runs into a holiday."""
    days_back = (now.minute_of_week % 1440 - since_start) // 1440  # 0 today, -1 yesterday, ...
    return now.date + dt.timedelta(days=days_back) in rules.holidays


def _active(setting: ScheduledSetting, rules: RuleSet, now: LocalTime) -> bool:
    since = rules.schedules[setting.schedule].since_start(now.minute_of_week)
    return since is not None and (setting.on_holidays or not window_on_holiday(rules, now, since))


def door_mode(rules: RuleSet, door: Door, now: LocalTime) -> str:
    """normal | unlocked | locked_down: the first of the door's scheduled modes that applies now.
    A lockdown wins over an unlock when both apply."""
    active = [m.value for m in door.modes if _active(m, rules, now)]
    return "locked_down" if "locked_down" in active else (active[0] if active else "normal")


def door_auth(rules: RuleSet, door: Door, now: LocalTime) -> str:
    """face | face+claim | claim_if_uncertain: the strictest of the door's authentication modes
    that apply now (face+claim wins over claim_if_uncertain, which wins over plain face)."""
    active = {a.value for a in door.auth if _active(a, rules, now)}
    return next((a for a in ("face+claim", "claim_if_uncertain") if a in active), "face")


def claim_matches(request: AccessRequest) -> bool:
    """A second factor counts only for the person the face was decided for: a claim (a badge or
    PIN naming a person) for anyone else is no second factor at all."""
    return bool(request.claim) and bool(request.person_id) and request.claim == request.person_id


def level_check(rules: RuleSet, request: AccessRequest, now: LocalTime) -> tuple[str, AccessLevel | None]:
    """The access level that lets this person through this door now, or the most telling
    reason none does: no level at all < outside its schedule < a holiday."""
    reason = NO_ACCESS_LEVEL
    groups = set(request.groups)
    for level in rules.levels:
        if request.door not in level.doors or not groups & level.groups:
            continue
        since = rules.schedules[level.schedule].since_start(now.minute_of_week)
        if since is None:
            reason = reason if reason == HOLIDAY else OUTSIDE_SCHEDULE
        elif not level.on_holidays and window_on_holiday(rules, now, since):
            reason = HOLIDAY
        else:
            return GRANTED, level
    return reason, None


def timed_passback(rules: RuleSet, request: AccessRequest, history: AccessHistory) -> bool:
    """True when the person was granted at this door less than `timed_s` ago (a face passed
    back to a friend outside, or the same person twice). A last grant "in the future" means the
    clock went back: within the window either way counts, so a clock jump opens nothing."""
    if rules.passback_s <= 0:
        return False
    last = history.last_grant(request.person_id, request.door)
    return last is not None and abs(request.at - last) < rules.passback_s


def paired_passback(door: Door, request: AccessRequest, history: AccessHistory) -> bool:
    """In/out anti-passback: no entering twice without leaving, no leaving twice without
    entering. Only a known violation counts: a person never seen at the pair may pass."""
    if door.pair is None:
        return False
    return history.last_door(request.person_id, (door.id, door.pair)) == door.id


class AccessPolicy:
    """`AccessPolicy(rules).evaluate(request, history) -> Verdict`.

    `rules` is a callable returning the current RuleSet, or None when there is none that can be
    trusted (never synced, or the synced one failed validation and no good one was kept).
    `clock_synchronised` says whether an unlocked window may be taken now (edge.door.clock_sync):
    while not, the door is in normal mode, and so are its rules (levels, second factor,
    anti-passback), not only its lock."""

    def __init__(self, rules: Callable[[], RuleSet | None], clock_synchronised: Callable[[], bool] = lambda: True):
        self._rules = rules
        self._clock_synchronised = clock_synchronised

    def evaluate(self, request: AccessRequest, history: AccessHistory) -> Verdict:
        try:
            rules = self._rules()
        except Exception:  # a provider that fails is a broken rule set: deny, never open
            rules = None
        if rules is None:
            return Verdict(Outcome.DENY, RULES_INVALID)
        verdict = self._evaluate(rules, request, history)
        alarm = request.person_id in rules.duress_persons
        if alarm and verdict.granted:
            return Verdict(Outcome.GRANT, DURESS, verdict.rule, True, verdict.warning, rules.version)
        return Verdict(verdict.outcome, verdict.reason, verdict.rule, alarm, verdict.warning,
                             rules.version)

    def _evaluate(self, rules: RuleSet, request: AccessRequest, history: AccessHistory) -> Verdict:
        door = rules.doors.get(request.door)
        if door is None:
            return Verdict(Outcome.DENY, NO_ACCESS_LEVEL, f"door:{request.door}")
        now = local_time(rules, request.at)
        mode = door_mode(rules, door, now)
        if mode == "unlocked" and not self._clock_synchronised():
            mode = "normal"
        if mode == "locked_down":
            return Verdict(Outcome.DENY, LOCKED_DOWN, f"mode:{door.id}")
        auth = door_auth(rules, door, now)
        claimed = claim_matches(request)
        uncertain = request.decision == "uncertain" and not request.accept
        # an uncertain face never passes on its own: only with a matching claim, and only where
        # the schedule's authentication is claim_if_uncertain
        face_ok = request.accept or (uncertain and claimed and auth == "claim_if_uncertain")
        if not face_ok:
            if (uncertain and auth == "claim_if_uncertain" and mode == "normal"
                    and level_check(rules, request, now)[0] == GRANTED):
                return Verdict(Outcome.STEP_UP, SECOND_FACTOR_NEEDED, f"uncertain:{door.id}")
            return Verdict(Outcome.DENY, NOT_ACCEPTED)
        if mode == "unlocked":  # the door stands open on schedule: an accepted face just passes
            return Verdict(Outcome.GRANT, GRANTED, f"mode:{door.id}")
        reason, level = level_check(rules, request, now)
        if level is None:
            return Verdict(Outcome.DENY, reason)
        if auth == "face+claim" and not claimed:
            return Verdict(Outcome.STEP_UP, SECOND_FACTOR_NEEDED, f"auth:{door.id}")
        if timed_passback(rules, request, history):
            return Verdict(Outcome.DENY, ANTI_PASSBACK, "timed")
        if paired_passback(door, request, history):
            if rules.passback_response == "hard":
                return Verdict(Outcome.DENY, ANTI_PASSBACK, f"pair:{door.id}")
            return Verdict(Outcome.GRANT, GRANTED, f"level:{level.id}", warning=ANTI_PASSBACK)
        return Verdict(Outcome.GRANT, GRANTED, f"level:{level.id}")
