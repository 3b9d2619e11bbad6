"""The site's wall clock for the console: times shown and typed in the time zone of the appid's
access rules (edge.core.access_rules: `timezone`), UTC when it has none or an unknown one."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def site_zone(store, appid: str) -> tuple[ZoneInfo | timezone, str]:
    """(the zone, its name) of the appid's rules; (UTC, "UTC") without rules."""
    stored = store.get_rules(appid)
    if stored is not None:
        try:
            name = json.loads(stored[1]).get("timezone")
            if isinstance(name, str) and name:
                return ZoneInfo(name), name
        except (ValueError, ZoneInfoNotFoundError, AttributeError):
            pass  # the hub validated it when stored; a zone this machine lacks falls back to UTC
    return timezone.utc, "UTC"


def shown(at: float | None, zone) -> str:
    """`at` on the site's wall clock; with its offset from UTC where that clock shows the same
    time twice (the hour the clocks go back: 00:30 and 01:30 UTC both read 02:30 in Berlin)."""
    if at is None:
        return ""
    try:
        local = datetime.fromtimestamp(float(at), zone)
        text = local.strftime("%Y-%m-%d %H:%M:%S")
        if local.replace(fold=1 - local.fold).utcoffset() != local.utcoffset():
            text += local.strftime(" (UTC%z)")
        return text
    except (OverflowError, OSError, ValueError):  # a time no date can show: the page still renders
        return f"(not a date: {at!r:.32})"


def parsed(text: str, zone, *, end_of_day: bool = False) -> float | None:
    """Epoch seconds of `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM` in the site's zone (a bare date as
    `until` means the end of that day); None for empty; ValueError for anything else."""
    text = text.strip()
    if not text:
        return None
    if len(text) > 19:
        raise ValueError("a time is YYYY-MM-DD or YYYY-MM-DDTHH:MM")
    try:
        value = datetime.fromisoformat(text)
    except ValueError:  # its own words were Python's ("Invalid isoformat string")
        raise ValueError(f"{text[:19]!r} is no time: type a date as 2026-12-07, or a time as 2026-12-07T08:00"
                         ) from None
    if value.tzinfo is not None:
        raise ValueError("a time is given in the site's time zone, without an offset")
    try:
        if end_of_day and len(text) == 10:  # the next midnight: a daylight-saving day is 23 or 25 h
            value += timedelta(days=1)
        elif end_of_day and len(text) == 16:  # until 08:12 holds 08:12:59 (it held nothing of that minute)
            value += timedelta(minutes=1)
        return value.replace(tzinfo=zone).timestamp()
    except (OverflowError, OSError) as exc:  # 9999-12-31 and its next midnight
        raise ValueError(f"{text!r} is past the last date a time can say") from exc
