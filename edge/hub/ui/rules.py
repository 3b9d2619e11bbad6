"""The site's access rules in the console: read them in plain words; start them, add or remove
access levels, schedules' hours, doors and holidays and set the time zone with forms; edit the
whole document (door modes and authentication by schedule, duress, anti-passback) with its check
before anything is stored.

They could be set only by a signed `/face/setrules` (a curl line in docs/access.md): an operator
who does not write code could neither see nor change who may pass when, nor the site's time
zone, which every time the console shows depends on. Every change goes through the hub service's
`setrules` (the validation every edge applies, the version check) with the version the page was
read at: two admins editing at once get -1508 and their changes are not lost silently. A site
without rules lets its doors decide by their `[door] groups`; the first document saved decides
at every door from their next sync (a door it does not name lets nobody in), which the page says
before saving.
"""

from __future__ import annotations

import functools
import json
import zoneinfo
from datetime import date
from typing import Any

from starlette.responses import Response

from edge.api.ops import MAX_RULES_BYTES
from edge.core import access_rules
from edge.core.errors import ApiError
from edge.hub.ui.guard import Ctx, page
from edge.hub.ui.sitetime import site_zone


def _stored(console, appid: str) -> tuple[int, dict | None]:
    got = console.service.getrules(appid)
    return int(got["version"]), (json.loads(got["rules"]) if got["rules"] else None)


def _page(console, ctx: Ctx, *, status: int = 200, error: str = "", saved: str = "", checked: str = "",
          text: str | None = None) -> Response:
    version, doc = _stored(console, ctx.appid)
    _, zone_name = site_zone(console.store, ctx.appid)
    if text is None:
        text = json.dumps(doc, indent=2, ensure_ascii=False) if doc is not None else json.dumps(
            starting_document(console.store.group_sizes(ctx.appid)), indent=2)
    enrolled = [g for g, _ in console.store.group_sizes(ctx.appid)]
    # the groups a level may name: the document's, and those persons are enrolled in (added to
    # the document's list when a level names one)
    groups = list(dict.fromkeys([*(doc.get("groups") or [] if doc else []), *enrolled]))
    return console.render("rules.html", ctx, status=status, version=version, doc=doc, summary=summary(doc),
                          zone=zone_name, text=text, error=error, saved=saved, checked=checked,
                          zones=_zones(), groups=groups or ["staff"], days=access_rules.DAYS)


@functools.cache
def _zones() -> tuple[str, ...]:
    """The time zone names this machine knows, read once (each read walks the tz database)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def starting_document(groups: list[tuple[str, int]]) -> dict[str, Any]:
    """What the editor offers a site without rules: its groups, one door `main` and a schedule at
    all times, and no access level, so it lets nobody in until the admin writes who may pass.
    It let every group in at `main` (the default [door] name): a door limited to staff by its
    [door] groups let visitors in once an admin saved it with only the time zone changed."""
    names = [g for g, _ in groups] or ["staff"]
    return {"format": access_rules.FORMAT, "timezone": "UTC", "groups": names, "doors": [{"id": "main"}],
            "schedules": {"always": [{"days": list(access_rules.DAYS), "from": "00:00", "to": "24:00"}]},
            "access_levels": []}


def summary(doc: dict | None) -> dict[str, Any] | None:
    """The document in the shapes the page lists: schedules as lines of days and hours, each
    door with its modes and authentication by schedule, the levels, the holidays."""
    if doc is None:
        return None
    schedules = {name: [f"{' '.join(i.get('days', []))} {i.get('from')}–{i.get('to')}" for i in intervals]
                 for name, intervals in (doc.get("schedules") or {}).items()}
    doors = [{"id": d.get("id"), "modes": [f"{m.get('mode')} during {m.get('schedule')}" for m in d.get("modes", [])],
              "auth": [f"{a.get('auth')} during {a.get('schedule')}" for a in d.get("auth", [])],
              "pair": f"{d.get('direction')} of a pair with {d.get('pair')}" if d.get("pair") else ""}
             for d in doc.get("doors") or []]
    levels = [{"id": lv.get("id"), "groups": ", ".join(lv.get("groups", [])), "doors": ", ".join(lv.get("doors", [])),
               "schedule": lv.get("schedule"), "on_holidays": bool(lv.get("on_holidays"))}
              for lv in doc.get("access_levels") or []]
    apb = doc.get("anti_passback") or {}
    return {"schedules": schedules, "doors": doors, "levels": levels, "holidays": sorted(doc.get("holidays") or []),
            "duress": len(doc.get("duress_persons") or []),
            "anti_passback": (f"again within {apb['timed_s']} s: {apb.get('response', 'hard')}"
                              if apb.get("timed_s") else "")}


def _save(console, ctx: Ctx, doc: dict, done: str, *, edited: bool = False) -> Response:
    """Store `doc` as the next version, refused when the rules changed since the page was read.
    Refused by the check, the editor shows it (`edited`: the editor's own) or the stored one (a
    form's change: the admin did not write that document)."""
    try:
        expected = int(ctx.form.get("version", "-1"))
    except ValueError:
        expected = -1
    try:
        got = console.service.setrules(ctx.appid, json.dumps(doc, ensure_ascii=False), expected_version=expected)
    except ApiError as exc:
        why = exc.message
        if exc.code == access_rules.RULES_VERSION_CONFLICT:
            why = ("someone changed the rules since you opened this page: nothing was saved. The page now shows "
                   "theirs; make your change again")
            return _page(console, ctx, status=409, error=why)
        if edited:
            return _page(console, ctx, status=400, error=why, text=json.dumps(doc, indent=2, ensure_ascii=False))
        return _page(console, ctx, status=400, error=f"nothing was saved: {why}")
    return _page(console, ctx, saved=f"{done}: version {got['version']}, which each door applies at its next sync")


@page("viewer")
def rules(console, ctx: Ctx) -> Response:
    return _page(console, ctx)


@page("admin", upload_bytes=MAX_RULES_BYTES + 65536)
def rules_save(console, ctx: Ctx) -> Response:
    """The editor's document: checked only (`check`), or stored."""
    text = ctx.form.get("document", "")
    try:
        doc = json.loads(text)
        access_rules.parse_rules(doc)
    except (ValueError, RecursionError):
        return _page(console, ctx, status=400, text=text, error="the document is not JSON: a comma, a quote or a "
                                                                  "bracket is missing or extra")
    except ApiError as exc:
        return _page(console, ctx, status=400, text=text, error=exc.message)
    if ctx.form.get("action") == "check":
        nobody = "" if doc.get("access_levels") else (": it has no access level, so it lets nobody in but at "
                                                      "doors unlocked by schedule")
        return _page(console, ctx, text=text, checked=f"the document is valid{nobody}; nothing was saved yet")
    return _save(console, ctx, doc, "Saved", edited=True)


@page("admin")
def rules_timezone(console, ctx: Ctx) -> Response:
    name = ctx.form.get("timezone", "").strip()
    _, doc = _stored(console, ctx.appid)
    if doc is None:
        return _page(console, ctx, status=400, error="the site has no rules yet: the time zone is part of them "
                                                     "(write them in the editor below)")
    if name not in _zones():
        return _page(console, ctx, status=400, error=f"{name[:64]!r} is not a time zone: choose one of the list "
                                                     "(e.g. Europe/Berlin)")
    return _save(console, ctx, {**doc, "timezone": name}, f"The time zone is {name}")


@page("admin")
def rules_holiday(console, ctx: Ctx) -> Response:
    """Add or remove one holiday (a date the levels without `on_holidays` do not apply)."""
    day = ctx.form.get("day", "").strip()
    _, doc = _stored(console, ctx.appid)
    if doc is None:
        return _page(console, ctx, status=400, error="the site has no rules yet: holidays are part of them")
    try:
        if len(day) != 10:
            raise ValueError(day)
        # as the document stores it: a week date (2026-W52-4) was stored as typed, and removing
        # that day by its date then removed nothing
        day = date.fromisoformat(day).isoformat()
    except ValueError:
        return _page(console, ctx, status=400, error=f"{day[:32]!r} is no date: type it as 2026-12-25")
    holidays = [d for d in doc.get("holidays") or [] if d != day]
    adding = ctx.form.get("action") != "remove"
    if adding:
        holidays.append(day)
    return _save(console, ctx, {**doc, "holidays": sorted(holidays)},
                 f"{day} is {'a holiday' if adding else 'no holiday'} now")


def _chosen(ctx: Ctx, name: str) -> list[str]:
    """A form's ticked values of `name` (checkboxes), each once, in order."""
    return list(dict.fromkeys(v.strip() for v in ctx.lists.get(name, []) if v.strip()))


def _with_groups(doc: dict, groups: list[str]) -> list[str]:
    return list(dict.fromkeys([*(doc.get("groups") or []), *groups]))


@page("admin")
def rules_start(console, ctx: Ctx) -> Response:
    """The first rules from a form: the groups one door lets in at all times (what its `[door]
    groups` did), on the document offered to start from. Every other door then lets nobody in
    until a level names it, which the page says beside the form."""
    _, doc = _stored(console, ctx.appid)
    if doc is not None:
        return _page(console, ctx, status=400, error="the site has rules already: add an access level to them")
    door, groups = ctx.form.get("door", "").strip() or "main", _chosen(ctx, "groups")
    if not groups:
        return _page(console, ctx, status=400, error="choose the groups this door lets in")
    start = starting_document(console.store.group_sizes(ctx.appid))
    first = {**start, "groups": _with_groups(start, groups), "doors": [{"id": door}],
             "access_levels": [{"id": f"{door}-always"[:64], "groups": groups, "doors": [door],
                                "schedule": "always"}]}
    return _save(console, ctx, first, f"The rules start: {', '.join(groups)} may pass {door} at all times")


def _remove(console, ctx: Ctx, doc: dict, field: str, name: str, what: str, done: str) -> Response:
    """The document without the item of `field` whose id is `name`, stored (the check refuses
    one still named elsewhere)."""
    items = list(doc.get(field) or [])
    kept = [item for item in items if item.get("id") != name]
    if len(kept) == len(items):
        return _page(console, ctx, status=400, error=f"there is no {what} {name[:64]!r}")
    return _save(console, ctx, {**doc, field: kept}, f"The {what} {name} is {done}")


def _rules_of(console, ctx: Ctx) -> dict | Response:
    _, doc = _stored(console, ctx.appid)
    if doc is None:
        return _page(console, ctx, status=400, error="the site has no rules yet: start them first")
    return doc


@page("admin")
def rules_level(console, ctx: Ctx) -> Response:
    """Add an access level (groups x doors x one schedule) or remove one by its name."""
    doc = _rules_of(console, ctx)
    if isinstance(doc, Response):
        return doc
    name, levels = ctx.form.get("id", "").strip(), list(doc.get("access_levels") or [])
    if ctx.form.get("action") == "remove":
        return _remove(console, ctx, doc, "access_levels", name, "access level", "removed")
    groups, doors, schedule = _chosen(ctx, "groups"), _chosen(ctx, "doors"), ctx.form.get("schedule", "").strip()
    if not groups or not doors:
        return _page(console, ctx, status=400, error="choose at least one group and one door")
    taken = {lv.get("id") for lv in levels}
    name = name or next(f"level-{n}" for n in range(1, len(levels) + 2) if f"level-{n}" not in taken)
    if name in taken:
        return _page(console, ctx, status=400, error=f"an access level {name[:64]!r} exists already: "
                                                     "choose another name or remove it first")
    level: dict[str, Any] = {"id": name, "groups": groups, "doors": doors, "schedule": schedule}
    if ctx.form.get("on_holidays"):
        level["on_holidays"] = True
    return _save(console, ctx, {**doc, "groups": _with_groups(doc, groups), "access_levels": [*levels, level]},
                 f"The access level {name} lets {', '.join(groups)} pass {', '.join(doors)} during {schedule}")


@page("admin")
def rules_schedule(console, ctx: Ctx) -> Response:
    """Add hours to a schedule (made when new) or remove a schedule; one a level or a door uses
    is refused by the check every door applies."""
    doc = _rules_of(console, ctx)
    if isinstance(doc, Response):
        return doc
    name, schedules = ctx.form.get("name", "").strip(), dict(doc.get("schedules") or {})
    if ctx.form.get("action") == "remove":
        if name not in schedules:
            return _page(console, ctx, status=400, error=f"there is no schedule {name[:64]!r}")
        del schedules[name]
        return _save(console, ctx, {**doc, "schedules": schedules}, f"The schedule {name} is removed")
    days = [d for d in access_rules.DAYS if d in ctx.lists.get("days", [])]
    if not days:
        return _page(console, ctx, status=400, error="choose the days of these hours")
    hours = {"days": days, "from": ctx.form.get("from", "").strip(), "to": ctx.form.get("to", "").strip()}
    schedules[name] = [*schedules.get(name, []), hours]
    return _save(console, ctx, {**doc, "schedules": schedules},
                 f"The schedule {name} holds {' '.join(days)} {hours['from']}–{hours['to']}")


@page("admin")
def rules_door(console, ctx: Ctx) -> Response:
    """Add a door by its name (its `[door] name`) or remove one; a door a level names is refused
    by the check."""
    doc = _rules_of(console, ctx)
    if isinstance(doc, Response):
        return doc
    name, doors = ctx.form.get("id", "").strip(), list(doc.get("doors") or [])
    if ctx.form.get("action") == "remove":
        return _remove(console, ctx, doc, "doors", name, "door", "removed: it lets nobody in")
    if any(d.get("id") == name for d in doors):
        return _page(console, ctx, status=400, error=f"a door {name[:64]!r} exists already")
    return _save(console, ctx, {**doc, "doors": [*doors, {"id": name}]},
                 f"The door {name} is added: it lets nobody in until an access level names it")
