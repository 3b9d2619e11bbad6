"""A site's access rule document: its value types, and the one parser that validates it.

The hub validates a document on write (/face/setrules), the edge again on sync: both call
`parse_rules`, so a document the hub accepted is one the edge can evaluate, and a document that
fails here never reaches an evaluator (the edge keeps its last good rules). Values only; the
evaluation lives in edge/door/access.py. The document format is described in docs/access.md.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from edge.core.errors import ApiError

# Documented codes (docs/access.md, docs/hub.md): the vendor API has nothing in -15xx.
RULES_MALFORMED = -1500
RULES_UNKNOWN_GROUP = -1501
RULES_UNKNOWN_DOOR = -1502
RULES_UNKNOWN_SCHEDULE = -1503
RULES_OVERLAPPING_SCHEDULE = -1504
RULES_EMPTY_SCHEDULE = -1505
RULES_UNKNOWN_TIMEZONE = -1506
RULES_TOO_LARGE = -1507
RULES_VERSION_CONFLICT = -1508

RULE_MESSAGES = {
    RULES_MALFORMED: "rules document malformed",
    RULES_UNKNOWN_GROUP: "rules reference a group the document does not declare",
    RULES_UNKNOWN_DOOR: "rules reference a door the document does not declare",
    RULES_UNKNOWN_SCHEDULE: "rules reference a schedule the document does not declare",
    RULES_OVERLAPPING_SCHEDULE: "a schedule has overlapping intervals",
    RULES_EMPTY_SCHEDULE: "a schedule or interval is empty",
    RULES_UNKNOWN_TIMEZONE: "time zone does not exist",
    RULES_TOO_LARGE: "rules document too large",
    RULES_VERSION_CONFLICT: "rules changed since the version given",
}

FORMAT = 1  # the document format this parser reads
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
WEEK_MIN = 7 * 1440
MODES = ("normal", "unlocked", "locked_down")
# face: an accepted face alone; face+claim: an accepted face and a claim for the same person;
# claim_if_uncertain: an accepted face alone, or an uncertain one with a claim for that person
AUTHS = ("face", "face+claim", "claim_if_uncertain")
RESPONSES = ("hard", "soft")
# The door modes and authentications that apply on holidays when their entry does not say: those
# that restrict (docs/access.md#holidays)
HOLIDAY_DEFAULT = ("normal", "locked_down", "face", "face+claim")
# Hostile-input caps: a rule document is small (a site has tens of doors, not thousands).
MAX_ITEMS = 512
MAX_INTERVALS = 64
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_HHMM = re.compile(r"^([01][0-9]|2[0-4]):([0-5][0-9])$")


class RulesError(ApiError):
    """A rule document that cannot be evaluated safely; `code` is one of the RULES_* codes."""

    def __init__(self, code: int, detail: str):
        super().__init__(code, f"{RULE_MESSAGES[code]}: {detail}")


@dataclass(frozen=True)
class Schedule:
    """Weekly windows as [start, end) minutes from Monday 00:00 local time; an interval that
    ends at or before its start spans midnight into the next day (22:00-06:00)."""
    id: str
    windows: tuple[tuple[int, int], ...]

    def covers(self, minute_of_week: int) -> bool:
        return self.since_start(minute_of_week) is not None

    def since_start(self, minute_of_week: int) -> int | None:
        """Minutes since the start of the window covering `minute_of_week`, None if none does
        (a window belongs to the day it starts: its holiday is that day's)."""
        for s, e in self.windows:
            for m in (minute_of_week, minute_of_week + WEEK_MIN):
                if s <= m < e:
                    return m - s
        return None


@dataclass(frozen=True)
class AccessLevel:
    id: str
    groups: frozenset[str]
    doors: frozenset[str]
    schedule: str
    on_holidays: bool = False


@dataclass(frozen=True)
class ScheduledSetting:
    """A door mode or authentication mode that applies while its schedule covers the time."""
    schedule: str
    value: str
    on_holidays: bool


@dataclass(frozen=True)
class Door:
    id: str
    modes: tuple[ScheduledSetting, ...] = ()
    auth: tuple[ScheduledSetting, ...] = ()
    pair: str | None = None  # the paired door for in/out anti-passback
    direction: str | None = None  # "in" | "out" when paired


@dataclass(frozen=True)
class RuleSet:
    version: int  # the hub's revision of the document (1, 2, ...); 0 before the hub stored it
    timezone: str
    groups: frozenset[str]
    doors: dict[str, Door]
    schedules: dict[str, Schedule]
    levels: tuple[AccessLevel, ...]
    holidays: frozenset[dt.date]
    duress_persons: frozenset[str]
    passback_s: float  # timed anti-passback per person and door; 0 = off
    passback_response: str  # hard | soft, for in/out anti-passback
    zone: zoneinfo.ZoneInfo


def _fail(code: int, detail: str) -> RulesError:
    return RulesError(code, detail)


def _obj(value: Any, where: str, fields: tuple[str, ...] | None = None) -> dict:
    """`value` as an object; with `fields`, one holding no other key: a misspelt key ignored
    would be read more permissively than its author meant (`"mode"` for `"modes"` drops a
    lockdown, `"authentication"` a second factor)."""
    if not isinstance(value, dict):
        raise _fail(RULES_MALFORMED, f"{where} must be an object")
    if fields is not None:
        unknown = set(value) - set(fields)
        if unknown:
            raise _fail(RULES_MALFORMED, f"{where}: unknown field {str(sorted(unknown)[0])[:32]!r}")
    return value


def _list(value: Any, where: str, cap: int = MAX_ITEMS) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(RULES_MALFORMED, f"{where} must be a list")
    if len(value) > cap:
        raise _fail(RULES_TOO_LARGE, f"{where} has more than {cap} items")
    return value


def _id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _ID.match(value):
        raise _fail(RULES_MALFORMED, f"{where} must be an id (letters, digits, ._:@-, at most 64)")
    return value


def _bool(value: Any, where: str, default: bool) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _fail(RULES_MALFORMED, f"{where} must be true or false")
    return value


def _minutes(value: Any, where: str) -> int:
    m = _HHMM.match(value) if isinstance(value, str) else None
    if not m or (m.group(1) == "24" and m.group(2) != "00"):
        raise _fail(RULES_MALFORMED, f"{where} must be HH:MM (00:00..24:00)")
    return int(m.group(1)) * 60 + int(m.group(2))


def _date(value: Any) -> dt.date:
    if isinstance(value, str) and len(value) == 10:
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise _fail(RULES_MALFORMED, f"holiday {str(value)[:16]!r} is not YYYY-MM-DD")


# Zone names that mean another zone on each machine (`localtime`: the system's own zone, on
# Debian a link to /etc/localtime) or are no civil time (`right/`: clocks counting leap seconds).
_MACHINE_ZONES = ("localtime", "posixrules", "Factory")
_MACHINE_ZONE_DIRS = ("right/", "posix/")


def _zone(name: Any) -> zoneinfo.ZoneInfo:
    if not isinstance(name, str) or not name or len(name) > 64 or name in _MACHINE_ZONES \
            or name.startswith(_MACHINE_ZONE_DIRS):
        raise _fail(RULES_UNKNOWN_TIMEZONE, repr(name)[:80])
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _fail(RULES_UNKNOWN_TIMEZONE, repr(name)[:80]) from None


def _schedule(sid: str, raw: Any) -> Schedule:
    windows: list[tuple[int, int]] = []
    intervals = _list(raw, f"schedules.{sid}", MAX_INTERVALS)
    if not intervals:
        raise _fail(RULES_EMPTY_SCHEDULE, f"schedule {sid} has no interval")
    for i, item in enumerate(intervals):
        where = f"schedules.{sid}[{i}]"
        item = _obj(item, where, ("days", "from", "to"))
        days = _list(item.get("days"), f"{where}.days", 7)
        if not days:
            raise _fail(RULES_EMPTY_SCHEDULE, f"{where} has no day")
        start, end = _minutes(item.get("from"), f"{where}.from"), _minutes(item.get("to"), f"{where}.to")
        if start == end or start == 1440:
            raise _fail(RULES_EMPTY_SCHEDULE, f"{where} is empty ({item.get('from')}-{item.get('to')})")
        length = end - start if end > start else end + 1440 - start
        for day in days:
            if day not in DAYS:
                raise _fail(RULES_MALFORMED, f"{where}.days: {str(day)[:16]!r} is not one of {DAYS}")
            s = DAYS.index(day) * 1440 + start
            windows.append((s, s + length))
    _no_overlap(sid, windows)
    return Schedule(sid, tuple(sorted(windows)))


def _no_overlap(sid: str, windows: list[tuple[int, int]]) -> None:
    # Unroll the week's wrap (Sunday 22:00 - Monday 06:00) so that every overlap is adjacent.
    flat = sorted([(s, min(e, WEEK_MIN)) for s, e in windows]
                  + [(0, e - WEEK_MIN) for s, e in windows if e > WEEK_MIN])
    for (_s1, e1), (s2, _e2) in zip(flat, flat[1:]):
        if s2 < e1:
            day, minute = divmod(s2, 1440)
            raise _fail(RULES_OVERLAPPING_SCHEDULE,
                        f"schedule {sid} overlaps itself on {DAYS[day]} at {minute // 60:02d}:{minute % 60:02d}")


def _settings(raw: Any, where: str, allowed: tuple[str, ...], key: str,
              schedules: dict[str, Schedule]) -> tuple[ScheduledSetting, ...]:
    out = []
    for i, item in enumerate(_list(raw, where)):
        item = _obj(item, f"{where}[{i}]", ("schedule", key, "on_holidays"))
        sched = _id(item.get("schedule"), f"{where}[{i}].schedule")
        if sched not in schedules:
            raise _fail(RULES_UNKNOWN_SCHEDULE, f"{where}[{i}]: {sched}")
        value = item.get(key)
        if value not in allowed:
            raise _fail(RULES_MALFORMED, f"{where}[{i}].{key} must be one of {allowed}")
        # What restricts holds on holidays unless said otherwise (a lockdown, a second factor asked
        # for): a holiday lifted them. What opens does not (an unlocked door, a claim making up for
        # an uncertain face).
        on_holidays = _bool(item.get("on_holidays"), f"{where}[{i}].on_holidays", value in HOLIDAY_DEFAULT)
        out.append(ScheduledSetting(sched, value, on_holidays))
    return tuple(out)


def parse_rules(doc: Any, version: int = 0) -> RuleSet:
    """Validate a rule document (a JSON object) into a RuleSet; raise RulesError with a
    documented code on the first problem found."""
    doc = _obj(doc, "rules")
    if doc.get("format", FORMAT) != FORMAT:
        raise _fail(RULES_MALFORMED, f"format must be {FORMAT}")
    unknown = set(doc) - {"format", "timezone", "groups", "doors", "schedules", "access_levels",
                          "holidays", "duress_persons", "anti_passback"}
    if unknown:
        raise _fail(RULES_MALFORMED, f"unknown field {sorted(unknown)[0][:32]!r}")
    zone = _zone(doc.get("timezone"))
    groups = frozenset(_id(g, "groups[]") for g in _list(doc.get("groups"), "groups"))
    raw_schedules = _obj(doc.get("schedules") or {}, "schedules")
    if len(raw_schedules) > MAX_ITEMS:
        raise _fail(RULES_TOO_LARGE, f"more than {MAX_ITEMS} schedules")
    schedules = {_id(k, "schedules key"): _schedule(k, v) for k, v in raw_schedules.items()}

    doors: dict[str, Door] = {}
    for i, raw in enumerate(_list(doc.get("doors"), "doors")):
        raw = _obj(raw, f"doors[{i}]", ("id", "modes", "auth", "pair", "direction"))
        did = _id(raw.get("id"), f"doors[{i}].id")
        if did in doors:
            raise _fail(RULES_MALFORMED, f"door {did} declared twice")
        pair, direction = raw.get("pair"), raw.get("direction")
        if (pair is None) != (direction is None) or direction not in (None, "in", "out"):
            raise _fail(RULES_MALFORMED, f"doors[{i}]: pair and direction (in|out) go together")
        doors[did] = Door(did, _settings(raw.get("modes"), f"doors[{i}].modes", MODES, "mode", schedules),
                          _settings(raw.get("auth"), f"doors[{i}].auth", AUTHS, "auth", schedules),
                          None if pair is None else _id(pair, f"doors[{i}].pair"), direction)
    for door in doors.values():
        if door.pair is None:
            continue
        other = doors.get(door.pair)
        if other is None:
            raise _fail(RULES_UNKNOWN_DOOR, f"door {door.id} is paired with {door.pair}")
        if other.pair != door.id or other.direction == door.direction:
            raise _fail(RULES_MALFORMED, f"doors {door.id} and {other.id}: a pair is mutual, one in, one out")

    levels = []
    for i, raw in enumerate(_list(doc.get("access_levels"), "access_levels")):
        raw = _obj(raw, f"access_levels[{i}]", ("id", "groups", "doors", "schedule", "on_holidays"))
        lid = _id(raw.get("id"), f"access_levels[{i}].id")
        lgroups = frozenset(_id(g, f"access_levels[{i}].groups[]") for g in _list(raw.get("groups"), "groups"))
        ldoors = frozenset(_id(d, f"access_levels[{i}].doors[]") for d in _list(raw.get("doors"), "doors"))
        if not lgroups or not ldoors:
            raise _fail(RULES_MALFORMED, f"access level {lid} needs groups and doors")
        if lgroups - groups:
            raise _fail(RULES_UNKNOWN_GROUP, f"access level {lid}: {sorted(lgroups - groups)[0]}")
        if ldoors - doors.keys():
            raise _fail(RULES_UNKNOWN_DOOR, f"access level {lid}: {sorted(ldoors - doors.keys())[0]}")
        sched = _id(raw.get("schedule"), f"access_levels[{i}].schedule")
        if sched not in schedules:
            raise _fail(RULES_UNKNOWN_SCHEDULE, f"access level {lid}: {sched}")
        levels.append(AccessLevel(lid, lgroups, ldoors, sched,
                                  _bool(raw.get("on_holidays"), f"access_levels[{i}].on_holidays", False)))

    holidays = set()
    for h in _list(doc.get("holidays"), "holidays", 4 * MAX_ITEMS):
        holidays.add(_date(h))
    apb = _obj(doc.get("anti_passback") or {}, "anti_passback", ("timed_s", "response"))
    seconds = apb.get("timed_s", 0)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 86400:
        raise _fail(RULES_MALFORMED, "anti_passback.timed_s must be 0..86400 seconds")
    response = apb.get("response", "hard")
    if response not in RESPONSES:
        raise _fail(RULES_MALFORMED, f"anti_passback.response must be one of {RESPONSES}")
    duress = frozenset(_id(p, "duress_persons[]") for p in _list(doc.get("duress_persons"), "duress_persons"))
    return RuleSet(version, zone.key, groups, doors, schedules, tuple(levels), frozenset(holidays),
                   duress, float(seconds), response, zone)
