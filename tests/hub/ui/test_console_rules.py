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


def test_an_admin_who_writes_no_json_starts_the_rules_and_adds_doors_hours_and_levels(hub):
    """Who may pass which door when could be changed only in the JSON editor: an admin who does
    not write code could set the time zone and holidays, nothing else. Forms start the rules (one
    door, its groups, at all times), add and remove doors, a schedule's hours and access levels,
    each checked as every door checks it; a change the check refuses saves nothing."""
    from edge.door.access import AccessPolicy
    from edge.door.interface import AccessRequest, Outcome
    from edge.door.rules import NoHistory

    ada = Browser(hub.url)
    ada.login("ada")
    start = ada.get("/ui/rules").text
    assert "Start the rules" in start and 'name="groups" value="staff"' in start
    assert ada.post("/ui/rules/start", {"version": "0", "door": "front", "groups": []}).status_code == 400
    started = ada.post("/ui/rules/start", {"version": "0", "door": "front", "groups": ["staff"]})
    assert "staff may pass front at all times: version 1" in started.text
    assert "Add an access level" in started.text and "Start the rules" not in started.text

    def change(path: str, fields: dict, status: int = 200) -> str:
        version = str(hub.store.get_rules(APPID)[0])
        answer = ada.post(path, {"version": version, **fields})
        assert answer.status_code == status, answer.text
        return html.unescape(answer.text)

    assert "The door back is added" in change("/ui/rules/doors", {"action": "add", "id": "back"})
    assert "exists already" in change("/ui/rules/doors", {"action": "add", "id": "back"}, 400)
    weekdays = ["mon", "tue", "wed", "thu", "fri"]
    assert "The schedule office holds mon tue wed thu fri 07:00–19:00: version 3" in change(
        "/ui/rules/schedules", {"action": "add", "name": "office", "days": weekdays, "from": "07:00", "to": "19:00"})
    assert "nothing was saved" in change("/ui/rules/schedules", {"action": "add", "name": "office", "days": ["mon"],
                                                                  "from": "7:00", "to": "19:00"}, 400)
    assert "nothing was saved" in change("/ui/rules/schedules", {"action": "add", "name": "office", "days": ["mon"],
                                                                  "from": "18:00", "to": "20:00"}, 400)  # overlaps
    added = change("/ui/rules/levels", {"action": "add", "id": "cleaners-back", "groups": ["staff", "cleaners"],
                                        "doors": ["back"], "schedule": "office"})
    assert "The access level cleaners-back lets staff, cleaners pass back during office: version 4" in added
    assert "exists already" in change("/ui/rules/levels", {"action": "add", "id": "cleaners-back",
                                                           "groups": ["staff"], "doors": ["back"],
                                                           "schedule": "office"}, 400)
    # removing what a level uses is refused by the check, nothing saved
    assert "nothing was saved" in change("/ui/rules/schedules", {"action": "remove", "name": "office"}, 400)
    assert "nothing was saved" in change("/ui/rules/doors", {"action": "remove", "id": "back"}, 400)
    assert hub.store.get_rules(APPID)[0] == 4

    rules = parse_rules(json.loads(hub.store.get_rules(APPID)[1]))
    assert rules.groups == {"staff", "cleaners"}
    policy = AccessPolicy(lambda: rules)
    monday_9, monday_20 = 1796601600.0 + 9 * 3600, 1796601600.0 + 20 * 3600  # 2026-12-07, a Monday, UTC
    for at, door, group, granted in ((monday_9, "back", "cleaners", True), (monday_20, "back", "cleaners", False),
                                     (monday_20, "front", "staff", True), (monday_9, "front", "cleaners", False)):
        verdict = policy.evaluate(AccessRequest(event_id="e", door=door, person_id="p", groups=(group,),
                                                decision="accept", source="local", accept=True, at=at), NoHistory())
        assert (verdict.outcome is Outcome.GRANT) is granted, (door, group, at, verdict)

    otto = Browser(hub.url)
    otto.login("otto")  # an operator reads the rules, changes none
    assert otto.post("/ui/rules/levels", {"version": "4", "action": "remove", "id": "cleaners-back"}).status_code == 403
    assert "The access level cleaners-back is removed: version 5" in change(
        "/ui/rules/levels", {"action": "remove", "id": "cleaners-back"})
    assert "The door back is removed" in change("/ui/rules/doors", {"action": "remove", "id": "back"})
    assert "The schedule office is removed: version 7" in change("/ui/rules/schedules",
                                                                 {"action": "remove", "name": "office"})
    assert "there is no access level" in change("/ui/rules/levels", {"action": "remove", "id": "nope"}, 400)
