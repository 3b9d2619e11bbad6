"""The access rule evaluator and the rule document's validation (docs/access.md)."""

from __future__ import annotations

import copy
import datetime as dt
import zoneinfo

import pytest

from edge.core import access_rules as ar
from edge.door.access import AccessPolicy
from edge.door.interface import AccessRequest, Outcome, Verdict

BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
ALL_DAYS = WEEKDAYS + ["sat", "sun"]

DOC = {
    "format": 1,
    "timezone": "Europe/Berlin",
    "groups": ["staff", "cleaners", "guards"],
    "doors": [
        {"id": "front", "modes": [{"schedule": "night", "mode": "locked_down"},
                                  {"schedule": "open-hours", "mode": "unlocked"}],
         "auth": [{"schedule": "weekend", "auth": "face+claim"}, {"schedule": "office", "auth": "claim_if_uncertain"}]},
        {"id": "lab-in", "pair": "lab-out", "direction": "in"},
        {"id": "lab-out", "pair": "lab-in", "direction": "out"},
    ],
    "schedules": {
        "office": [{"days": WEEKDAYS, "from": "07:00", "to": "19:00"}],
        "weekend": [{"days": ["sat", "sun"], "from": "08:00", "to": "14:00"}],
        "night": [{"days": ["sun"], "from": "23:00", "to": "05:00"}],
        "open-hours": [{"days": ["wed"], "from": "10:00", "to": "12:00"}],
        "night-shift": [{"days": ["fri"], "from": "22:00", "to": "06:00"}],
        "always": [{"days": ALL_DAYS, "from": "00:00", "to": "24:00"}],
    },
    "access_levels": [
        {"id": "staff-office", "groups": ["staff"], "doors": ["front", "lab-in", "lab-out"], "schedule": "office"},
        {"id": "staff-weekend", "groups": ["staff"], "doors": ["front"], "schedule": "weekend"},
        {"id": "cleaners-night", "groups": ["cleaners"], "doors": ["front"], "schedule": "night-shift"},
        {"id": "guards", "groups": ["guards"], "doors": ["lab-in", "lab-out"], "schedule": "always",
         "on_holidays": True},
    ],
    "holidays": ["2026-12-25"],
    "duress_persons": ["ann-duress"],
    "anti_passback": {"timed_s": 300, "response": "hard"},
}


def local(*args: int) -> float:
    """A Berlin wall time as the UTC epoch the daemon's clock would give."""
    return dt.datetime(*args, tzinfo=BERLIN).timestamp()


def utc(*args: int) -> float:
    return dt.datetime(*args, tzinfo=dt.timezone.utc).timestamp()


class History:
    def __init__(self, grants: dict[tuple[str, str], float] | None = None):
        self.grants = grants or {}

    def last_grant(self, person_id: str, door: str | None = None) -> float | None:
        return self.grants.get((person_id, door or ""))

    def last_door(self, person_id: str, doors: tuple[str, ...]) -> str | None:
        """The grants here are written in time order: the latest is the last written."""
        seen = [(at, door) for door in doors if (at := self.grants.get((person_id, door))) is not None]
        return max(seen)[1] if seen else None


def req(at: float, door: str = "front", person: str = "ann", groups=("staff",), decision: str = "accept",
        claim: str | None = None) -> AccessRequest:
    return AccessRequest(event_id="e1", door=door, person_id=person, groups=tuple(groups), decision=decision,
                         source="local", accept=decision == "accept", at=at, claim=claim)


def policy(doc: dict | None = None, version: int = 3) -> AccessPolicy:
    rules = ar.parse_rules(copy.deepcopy(doc or DOC), version)
    return AccessPolicy(lambda: rules)


def verdict(at: float, history: History | None = None, doc: dict | None = None, **kw) -> Verdict:
    return policy(doc).evaluate(req(at, **kw), history or History())


# Tuesday 2026-12-01 is a plain weekday; 2026-12-25 (Friday) the holiday.
TUESDAY_9 = local(2026, 12, 1, 9, 0)


def test_accepted_staff_in_office_hours_is_granted_by_its_level() -> None:
    v = verdict(TUESDAY_9)
    assert (v.outcome, v.reason, v.rule, v.alarm, v.rules_version) == (Outcome.GRANT, "granted",
                                                                         "level:staff-office", False, 3)


@pytest.mark.parametrize("at,kw,reason", [
    (local(2026, 12, 1, 19, 0), {}, "outside_schedule"),  # the end is exclusive
    (local(2026, 12, 1, 6, 59), {}, "outside_schedule"),
    (local(2026, 12, 25, 9, 0), {}, "holiday"),
    (TUESDAY_9, {"groups": ("visitors",)}, "no_access_level"),
    (TUESDAY_9, {"door": "back"}, "no_access_level"),
    (TUESDAY_9, {"decision": "reject"}, "not_accepted"),
    (TUESDAY_9, {"decision": "unknown"}, "not_accepted"),
    (local(2026, 12, 7, 2, 0), {}, "locked_down"),  # Sunday 23:00 - Monday 05:00, over the week's wrap
    (local(2026, 12, 6, 23, 30), {"groups": ("cleaners",)}, "locked_down"),
])
def test_denials_carry_their_reason(at: float, kw: dict, reason: str) -> None:
    v = verdict(at, **kw)
    assert (v.outcome, v.reason) == (Outcome.DENY, reason)


def test_holiday_level_passes_on_a_holiday() -> None:
    assert verdict(local(2026, 12, 25, 9, 0), door="lab-in", groups=("guards",)).granted


def test_not_accepted_with_a_stale_accept_never_grants() -> None:
    request = AccessRequest("e", "front", "ann", ("staff",), "accept", "local", False, TUESDAY_9)
    assert policy().evaluate(request, History()).reason == "not_accepted"


def test_uncertain_asks_for_a_second_factor_where_the_schedule_allows_one() -> None:
    v = verdict(TUESDAY_9, decision="uncertain")  # front, office hours: claim_if_uncertain
    assert (v.outcome, v.reason, v.rule) == (Outcome.STEP_UP, "second_factor_needed", "uncertain:front")
    # ... but not where the person could not pass anyway: a flat deny.
    assert verdict(local(2026, 12, 1, 20, 0), decision="uncertain").outcome is Outcome.DENY
    # A claim for the decided person decides: uncertain face + its claim passes.
    v = verdict(TUESDAY_9, decision="uncertain", claim="ann")
    assert (v.outcome, v.reason, v.rule) == (Outcome.GRANT, "granted", "level:staff-office")


def test_uncertain_without_claim_if_uncertain_is_a_flat_deny_claim_or_not() -> None:
    # lab-in has no authentication setting (face): an uncertain face is never asked for more
    for claim in (None, "ann"):
        v = verdict(TUESDAY_9, door="lab-in", decision="uncertain", claim=claim)
        assert (v.outcome, v.reason) == (Outcome.DENY, "not_accepted")
    # face+claim (front, the weekend) wants an accepted face: uncertain + claim is not enough
    saturday = local(2026, 12, 5, 9, 0)
    assert verdict(saturday, decision="uncertain", claim="ann").reason == "not_accepted"


@pytest.mark.parametrize("decision", ["accept", "uncertain"])
def test_attack_a_claim_for_someone_else_is_no_second_factor(decision: str) -> None:
    # Badge of ben, face of ann: the claim names another person, so it counts for nothing.
    saturday = local(2026, 12, 5, 9, 0)  # face+claim
    v = verdict(saturday, decision=decision, claim="ben")
    assert not v.granted and v.reason in ("second_factor_needed", "not_accepted")
    v = verdict(TUESDAY_9, decision=decision, claim="ben")  # claim_if_uncertain
    assert v.granted is (decision == "accept")  # an accepted face passes on its own face only
    assert not verdict(TUESDAY_9, decision="uncertain", claim="ann", person="").granted  # no person, no match


@pytest.mark.parametrize("decision", ["reject", "unknown"])
def test_a_claim_never_lifts_a_reject_or_unknown(decision: str) -> None:
    assert verdict(TUESDAY_9, decision=decision, claim="ann").reason == "not_accepted"


def test_schedule_with_face_and_claim_steps_up_an_accepted_face() -> None:
    saturday = local(2026, 12, 5, 9, 0)
    v = verdict(saturday)
    assert (v.outcome, v.reason, v.rule) == (Outcome.STEP_UP, "second_factor_needed", "auth:front")
    assert verdict(saturday, claim="ann").reason == "granted"
    assert verdict(saturday, claim="pin:1234").reason == "second_factor_needed"  # not ann's


def test_unlocked_mode_lets_an_accepted_face_pass_without_a_level() -> None:
    v = verdict(local(2026, 12, 2, 11, 0), groups=("visitors",))
    assert (v.outcome, v.rule) == (Outcome.GRANT, "mode:front")
    assert verdict(local(2026, 12, 2, 11, 0), decision="reject").outcome is Outcome.DENY


def test_duress_person_is_granted_with_an_alarm_and_alarms_even_when_denied() -> None:
    v = verdict(TUESDAY_9, person="ann-duress")
    assert (v.outcome, v.reason, v.alarm) == (Outcome.GRANT, "duress", True)
    v = verdict(local(2026, 12, 1, 22, 0), person="ann-duress")
    assert (v.outcome, v.reason, v.alarm) == (Outcome.DENY, "outside_schedule", True)


def test_timed_anti_passback_per_person_and_door() -> None:
    history = History({("ann", "front"): TUESDAY_9 - 299})
    assert verdict(TUESDAY_9, history).reason == "anti_passback"
    assert verdict(TUESDAY_9, History({("ann", "front"): TUESDAY_9 - 300})).granted
    assert verdict(TUESDAY_9, history, person="bob").granted  # another person is not concerned
    # The clock went back 2 minutes since the last grant: still inside the window, still denied.
    assert verdict(TUESDAY_9, History({("ann", "front"): TUESDAY_9 + 120})).reason == "anti_passback"


def test_in_out_anti_passback_hard_and_soft() -> None:
    t = TUESDAY_9 + 3600
    inside = History({("ann", "lab-in"): t - 1000})
    v = verdict(t, inside, door="lab-in")
    assert (v.outcome, v.reason, v.rule) == (Outcome.DENY, "anti_passback", "pair:lab-in")
    assert verdict(t, inside, door="lab-out").granted  # leaving is fine
    assert verdict(t, History({("ann", "lab-in"): t - 1000, ("ann", "lab-out"): t - 500}), door="lab-in").granted
    assert verdict(t, History(), door="lab-out").granted  # never seen entering: not a known violation
    soft = copy.deepcopy(DOC)
    soft["anti_passback"]["response"] = "soft"
    v = verdict(t, inside, doc=soft, door="lab-in")
    assert (v.outcome, v.reason, v.warning) == (Outcome.GRANT, "granted", "anti_passback")


def test_no_rules_or_a_failing_provider_denies() -> None:
    assert AccessPolicy(lambda: None).evaluate(req(TUESDAY_9), History()).reason == "rules_invalid"

    def broken() -> ar.RuleSet:
        raise RuntimeError("disk gone")
    v = AccessPolicy(broken).evaluate(req(TUESDAY_9), History())
    assert (v.outcome, v.reason) == (Outcome.DENY, "rules_invalid")


# --- daylight saving (Europe/Berlin: 2026-03-29 02:00 → 03:00, 2026-10-25 03:00 → 02:00) ---

def test_spring_forward_schedule_follows_the_wall_clock() -> None:
    doc = copy.deepcopy(DOC)
    doc["schedules"]["office"] = [{"days": ALL_DAYS, "from": "07:00", "to": "19:00"}]
    # 05:30 UTC is 06:30 CET on Saturday, 07:30 CEST on Sunday.
    assert verdict(utc(2026, 3, 28, 5, 30), doc=doc, door="lab-in").reason == "outside_schedule"
    assert verdict(utc(2026, 3, 29, 5, 30), doc=doc, door="lab-in").granted
    # A night schedule spanning the missing hour: Saturday 22:00 CET to Sunday 06:00 CEST (7 h).
    night = copy.deepcopy(DOC)
    night["schedules"]["night-shift"] = [{"days": ["sat"], "from": "22:00", "to": "06:00"}]
    c = {"doc": night, "groups": ("cleaners",)}
    assert verdict(utc(2026, 3, 28, 20, 59), **c).reason == "outside_schedule"  # 21:59 CET
    assert verdict(utc(2026, 3, 28, 21, 0), **c).granted  # 22:00 CET
    assert verdict(utc(2026, 3, 29, 1, 0), **c).granted  # 03:00 CEST, just after the jump
    assert verdict(utc(2026, 3, 29, 3, 59), **c).granted  # 05:59 CEST
    assert verdict(utc(2026, 3, 29, 4, 0), **c).reason == "outside_schedule"  # 06:00 CEST


def test_fall_back_repeated_hour_is_inside_both_times() -> None:
    night = copy.deepcopy(DOC)
    night["schedules"]["night-shift"] = [{"days": ["sat"], "from": "22:00", "to": "06:00"}]
    c = {"doc": night, "groups": ("cleaners",)}
    assert verdict(utc(2026, 10, 25, 0, 30), **c).granted  # 02:30 CEST
    assert verdict(utc(2026, 10, 25, 1, 30), **c).granted  # 02:30 CET, the same wall time again
    assert verdict(utc(2026, 10, 25, 4, 59), **c).granted  # 05:59 CET
    assert verdict(utc(2026, 10, 25, 5, 0), **c).reason == "outside_schedule"  # 06:00 CET
    office = copy.deepcopy(DOC)
    office["schedules"]["office"] = [{"days": ALL_DAYS, "from": "07:00", "to": "19:00"}]
    assert verdict(utc(2026, 10, 24, 5, 30), doc=office, door="lab-in").granted  # 07:30 CEST
    assert verdict(utc(2026, 10, 25, 5, 30), doc=office, door="lab-in").reason == "outside_schedule"  # 06:30 CET


def test_midnight_spanning_schedule_belongs_to_the_day_it_starts() -> None:
    c = {"groups": ("cleaners",)}  # night-shift: Friday 22:00 - Saturday 06:00
    assert verdict(local(2026, 12, 4, 22, 0), **c).granted  # Friday 22:00
    assert verdict(local(2026, 12, 5, 5, 59), **c).granted  # Saturday 05:59
    assert verdict(local(2026, 12, 5, 6, 0), **c).reason == "outside_schedule"
    assert verdict(local(2026, 12, 4, 3, 0), **c).reason == "outside_schedule"  # Friday early: Thursday's night


# --- validation ---

def broken(path: str, value) -> dict:
    doc = copy.deepcopy(DOC)
    target = doc
    keys = path.split(".")
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target[k]
    last = keys[-1]
    if isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value
    return doc


@pytest.mark.parametrize("doc,code", [
    (broken("access_levels.0.groups", ["staff", "ghosts"]), ar.RULES_UNKNOWN_GROUP),
    (broken("access_levels.0.doors", ["front", "roof"]), ar.RULES_UNKNOWN_DOOR),
    (broken("doors.1.pair", "nowhere"), ar.RULES_UNKNOWN_DOOR),
    (broken("access_levels.0.schedule", "never"), ar.RULES_UNKNOWN_SCHEDULE),
    (broken("schedules.office", [{"days": ["mon"], "from": "07:00", "to": "12:00"},
                                 {"days": ["mon", "tue"], "from": "11:00", "to": "13:00"}]),
     ar.RULES_OVERLAPPING_SCHEDULE),
    # A Sunday night shift running into Monday's morning over the week's wrap.
    (broken("schedules.office", [{"days": ["sun"], "from": "22:00", "to": "06:00"},
                                 {"days": ["mon"], "from": "05:00", "to": "07:00"}]),
     ar.RULES_OVERLAPPING_SCHEDULE),
    (broken("schedules.office", []), ar.RULES_EMPTY_SCHEDULE),
    (broken("schedules.office", [{"days": ["mon"], "from": "07:00", "to": "07:00"}]), ar.RULES_EMPTY_SCHEDULE),
    (broken("schedules.office", [{"days": [], "from": "07:00", "to": "08:00"}]), ar.RULES_EMPTY_SCHEDULE),
    (broken("timezone", "Europe/Atlantis"), ar.RULES_UNKNOWN_TIMEZONE),
    (broken("timezone", "../../etc/passwd"), ar.RULES_UNKNOWN_TIMEZONE),
    (broken("timezone", None), ar.RULES_UNKNOWN_TIMEZONE),
    (broken("schedules.office", [{"days": ["mon"], "from": "7am", "to": "19:00"}]), ar.RULES_MALFORMED),
    (broken("holidays", ["25.12.2026"]), ar.RULES_MALFORMED),
    (broken("anti_passback", {"timed_s": -1}), ar.RULES_MALFORMED),
    (broken("doors.2.direction", "in"), ar.RULES_MALFORMED),
    (broken("groups", ["g"] * 600), ar.RULES_TOO_LARGE),
    (broken("surprise", 1), ar.RULES_MALFORMED),
    ([], ar.RULES_MALFORMED),
])
def test_a_broken_rule_document_is_refused_with_its_code(doc, code: int) -> None:
    with pytest.raises(ar.RulesError) as err:
        ar.parse_rules(doc)
    assert err.value.code == code, err.value.message


def test_adjacent_intervals_do_not_overlap() -> None:
    ok = broken("schedules.office", [{"days": ["sun"], "from": "22:00", "to": "06:00"},
                                     {"days": ["mon"], "from": "06:00", "to": "07:00"}])
    assert ar.parse_rules(ok).schedules["office"].covers(0)


def test_a_second_factor_holds_on_holidays_unless_the_entry_says_otherwise() -> None:
    """An auth entry's `on_holidays` defaulted to false for every kind: a door asking for
    face+claim at all times asked for the face alone on every holiday."""
    doc = {**DOC, "doors": [{"id": "front", "auth": [{"schedule": "always", "auth": "face+claim"}]},
                            *DOC["doors"][1:]],
           "access_levels": [{"id": "all", "groups": ["staff"], "doors": ["front"], "schedule": "always",
                              "on_holidays": True}]}
    christmas_eve, christmas = local(2026, 12, 24, 10, 0), local(2026, 12, 25, 10, 0)
    assert verdict(christmas_eve, doc=doc).reason == "second_factor_needed"
    assert verdict(christmas, doc=doc).reason == "second_factor_needed"
    assert verdict(christmas, doc=doc, claim="ann").granted
    lifted = copy.deepcopy(doc)
    lifted["doors"][0]["auth"][0]["on_holidays"] = False  # said explicitly: lifted on holidays
    assert verdict(christmas, doc=lifted).granted
    # what opens stays off on holidays unless said: claim_if_uncertain, unlocked
    rules = ar.parse_rules(copy.deepcopy(DOC))
    assert [(m.value, m.on_holidays) for m in rules.doors["front"].modes] == [("locked_down", True),
                                                                             ("unlocked", False)]
    assert [(a.value, a.on_holidays) for a in rules.doors["front"].auth] == [("face+claim", True),
                                                                            ("claim_if_uncertain", False)]


def test_a_window_belongs_to_the_day_it_starts_holidays_too() -> None:
    """The holiday was the date of the moment asked about: a Friday-night window on a Friday
    holiday opened at midnight into Saturday, and Thursday's night shift stopped at midnight
    before a Friday holiday."""
    doc = copy.deepcopy(DOC)
    doc["schedules"]["nights"] = [{"days": ["thu", "fri"], "from": "22:00", "to": "06:00"}]
    doc["doors"][0]["modes"] = [{"schedule": "nights", "mode": "unlocked"}]
    doc["access_levels"].append({"id": "night-staff", "groups": ["cleaners"], "doors": ["lab-in"],
                                 "schedule": "nights"})
    doc["holidays"] = ["2026-12-25"]  # a Friday
    policy_ = policy(doc)
    from edge.door.access import door_mode, local_time

    rules = ar.parse_rules(copy.deepcopy(doc))
    mode = [door_mode(rules, rules.doors["front"], local_time(rules, local(2026, 12, d, h, 0)))
            for d, h in ((24, 23), (25, 1), (25, 23), (26, 1))]
    assert mode == ["unlocked", "unlocked", "normal", "normal"]  # Thursday's runs on, Friday's never opens
    night = [policy_.evaluate(req(local(2026, 12, d, h, 0), door="lab-in", groups=("cleaners",)), History())
             for d, h in ((25, 1), (26, 1))]
    assert [(v.granted, v.reason) for v in night] == [(True, "granted"), (False, "holiday")]


@pytest.mark.parametrize("where, key", [
    ("doors.0", "mode"), ("doors.0", "authentication"), ("doors.0.modes.0", "on_holiday"),
    ("access_levels.0", "valid_until"), ("anti_passback", "timed"), ("schedules.office.0", "day"),
])
def test_a_misspelt_key_anywhere_is_refused_never_ignored(where, key) -> None:
    """Only the document's top level was checked: `"mode"` for `"modes"` dropped a lockdown,
    `"authentication"` a second factor, `"timed"` the anti-passback, a level's `valid_until`
    was no expiry at all, and each validated."""
    doc = copy.deepcopy(DOC)
    target = doc
    for part in where.split("."):
        target = target[int(part)] if part.isdigit() else target[part]
    target[key] = "x"
    with pytest.raises(ar.RulesError) as err:
        ar.parse_rules(doc)
    assert err.value.code == ar.RULES_MALFORMED and repr(key) in str(err.value)


@pytest.mark.parametrize("zone", ["localtime", "posixrules", "Factory", "right/Europe/Berlin", "posix/UTC"])
def test_a_time_zone_that_means_another_on_each_machine_is_refused(zone) -> None:
    with pytest.raises(ar.RulesError) as err:
        ar.parse_rules({**DOC, "timezone": zone})
    assert err.value.code == ar.RULES_UNKNOWN_TIMEZONE
