"""The site's access rules in the console: an operator who does not write code reads who may
pass where and when, and an admin sets the time zone, the holidays and the document, each
checked as every door checks it, with the version the page was read at. They could be set only
by a signed /face/setrules. A real hub on loopback; the rules then reach a door's sync."""

from __future__ import annotations

import html
import json

import pytest

from edge.core.access_rules import parse_rules
from tests.hub.ui.support import Browser, console_hub
from tests.support.hub import APPID


@pytest.fixture
def hub(tmp_path):
    with console_hub(tmp_path) as hub:
        yield hub


def _version(page: str) -> str:
    return page.split('name="version" value="', 1)[1].split('"', 1)[0]


def test_an_admin_writes_the_first_rules_then_a_zone_and_a_holiday_and_a_viewer_reads_them(hub):
    ada = Browser(hub.url)
    ada.login("ada")
    first = ada.get("/ui/rules").text
    assert "The site has no access rules" in first and "a door it does not name lets nobody in" in first
    # weekdays 08:00-18:00 for staff at the front door, the office door unlocked on weekdays at noon
    document = {"format": 1, "timezone": "UTC", "groups": ["staff"],
                "doors": [{"id": "front", "modes": [{"schedule": "noon", "mode": "unlocked"}]}],
                "schedules": {"office": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "08:00", "to": "18:00"}],
                              "noon": [{"days": ["mon", "tue", "wed", "thu", "fri"], "from": "12:00", "to": "13:00"}]},
                "access_levels": [{"id": "staff-front", "groups": ["staff"], "doors": ["front"], "schedule": "office"}]}
    broken = {**document, "access_levels": [{**document["access_levels"][0], "schedule": "offfice"}]}
    checked = ada.post("/ui/rules", {"version": "0", "action": "check", "document": json.dumps(broken)})
    assert checked.status_code == 400 and "schedule the document does not declare" in checked.text
    assert ada.post("/ui/rules", {"version": "0", "action": "check", "document": "{"}).status_code == 400
    assert hub.store.get_rules(APPID) is None  # checking stores nothing
    saved = ada.post("/ui/rules", {"version": "0", "action": "save", "document": json.dumps(document)})
    assert saved.status_code == 200 and "version 1" in saved.text
    zoned = ada.post("/ui/rules/timezone", {"version": _version(saved.text), "timezone": "Europe/Berlin"})
    assert "The time zone is Europe/Berlin: version 2" in zoned.text
    bad_zone = ada.post("/ui/rules/timezone", {"version": "2", "timezone": "Mars/Olympus"})
    assert bad_zone.status_code == 400 and "is not a time zone" in bad_zone.text
    holiday = ada.post("/ui/rules/holidays", {"version": "2", "day": "2026-12-24", "action": "add"})
    assert "2026-12-24 is a holiday now: version 3" in holiday.text
    assert ada.post("/ui/rules/holidays", {"version": "3", "day": "24.12.2026"}).status_code == 400
    # a second admin's page, read at version 2, saves nothing over version 3
    stale = ada.post("/ui/rules/holidays", {"version": "2", "day": "2026-12-31", "action": "add"})
    assert stale.status_code == 409 and "someone changed the rules since you opened this page" in stale.text
    version, stored = hub.store.get_rules(APPID)
    rules = parse_rules(json.loads(stored))
    assert version == 3 and json.loads(stored)["holidays"] == ["2026-12-24"]
    assert json.loads(stored)["timezone"] == "Europe/Berlin" and rules is not None

    vera = Browser(hub.url)
    vera.login("vera")
    read = vera.get("/ui/rules").text
    assert "Europe/Berlin" in read and "staff-front" in read and "mon tue wed thu fri 08:00–18:00" in read
    assert "unlocked during noon" in read and "2026-12-24" in read
    assert 'name="document"' not in read  # reading, not editing
    assert vera.post("/ui/rules/holidays", {"version": "3", "day": "2026-12-25"}).status_code == 403
    client = hub.client(timeout=30, retries=0)  # what a door syncs
    try:
        assert client.getrules()["version"] == 3
    finally:
        client.close()
    # the same day typed as a week date is the stored date (it was stored as typed: removing
    # 2026-12-24 then removed nothing)
    week_date = ada.post("/ui/rules/holidays", {"version": "3", "day": "2026-W52-4", "action": "remove"})
    assert "2026-12-24 is no holiday now: version 4" in week_date.text
    assert json.loads(hub.store.get_rules(APPID)[1])["holidays"] == []


def test_the_document_offered_to_start_from_lets_nobody_in(hub):
    """The editor offered every group at door `main` (the default [door] name) at all times: an
    admin who changed only its time zone and saved it let visitors through a door its own
    [door] groups held to staff. The one offered has no access level now, and Check says so."""
    ada = Browser(hub.url)
    ada.login("ada")
    page = ada.get("/ui/rules").text
    offered = json.loads(html.unescape(page.split('name="document"')[1].split(">", 1)[1].split("</textarea>")[0]))
    assert offered["access_levels"] == [] and offered["doors"] == [{"id": "main"}]
    offered["timezone"] = "Europe/Berlin"
    checked = ada.post("/ui/rules", {"version": "0", "action": "check", "document": json.dumps(offered)})
    assert checked.status_code == 200 and "it has no access level, so it lets nobody in" in checked.text
    saved = ada.post("/ui/rules", {"version": "0", "action": "save", "document": json.dumps(offered)})
    assert saved.status_code == 200 and "version 1" in saved.text
    rules = parse_rules(json.loads(hub.store.get_rules(APPID)[1]))
    assert rules.levels == ()  # no group granted anywhere
