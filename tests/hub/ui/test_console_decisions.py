"""The console's decisions page over HTTP on a real hub on loopback: the records an edge's real
access log (edge.door.access_log, hash-chained) uploads into the hub's store, shown newest first
in the site's time zone, filtered, paginated (whole pages and htmx partials), per tenant; and
"this was ...": a real photo compared with real models before anything is saved."""

from __future__ import annotations

import json
import re
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from edge.door.access_log import AccessLog
from tests.hub.ui.support import Browser, console_hub
from tests.support.broker import enrol_five
from tests.support.hub import APPID, OTHER_APPID

ZONE = "America/New_York"
RULES = {"format": 1, "timezone": ZONE, "groups": ["staff"], "doors": [{"id": "main"}, {"id": "back"}],
         "schedules": {}, "access_levels": []}
T0 = datetime(2026, 7, 1, 8, 0, tzinfo=ZoneInfo(ZONE)).timestamp()  # 08:00 in New York, 12:00 UTC


def upload(store, tmp_path, edge_id: str, rows: list[dict], appid: str = APPID) -> list[dict]:
    """Each row appended to a real edge access log at its time, the chain stored by the hub."""
    clock = iter([r.pop("at") for r in rows])
    log = AccessLog(tmp_path / f"{edge_id}.db", b"k" * 32, clock=lambda: next(clock))
    records = [log.append("decision", **r) for r in rows]
    assert store.store_access_records(appid, edge_id, records)[0] == len(records)
    return records


@pytest.fixture
def hub(tmp_path):
    with console_hub(tmp_path / "hub") as hub:
        hub.store.set_rules(APPID, json.dumps(RULES))
        yield hub


def rows_of(html: str) -> list[str]:
    return re.findall(r'<a href="/ui/decisions/[^"]+">([^<]+)</a>', html)


def test_decisions_newest_first_in_the_site_time_zone_filtered_and_per_tenant(hub, tmp_path):
    upload(hub.store, tmp_path, "edge-a", [
        {"at": T0, "door": "main", "person_id": "ann", "decision": "accept", "outcome": "grant", "reason": "granted",
         "score": 0.71, "liveness": "live"},
        {"at": T0 + 60, "door": "main", "decision": "reject", "outcome": "deny", "reason": "not_recognised",
         "score": 0.12, "liveness": "live"},
        {"at": T0 + 86400, "door": "back", "person_id": "ann", "decision": "accept", "outcome": "deny",
         "reason": "outside_schedule", "score": 0.69, "liveness": "spoof"}])
    upload(hub.store, tmp_path, "edge-z", [{"at": T0 + 5, "door": "main", "person_id": "zed-person",
                                            "decision": "accept", "outcome": "grant", "reason": "granted"}],
           appid=OTHER_APPID)
    browser = Browser(hub.url)
    browser.login("vera")  # a viewer reads them
    page = browser.get("/ui/decisions")
    assert page.status_code == 200
    assert rows_of(page.text) == ["2026-07-02 08:00:00", "2026-07-01 08:01:00", "2026-07-01 08:00:00"]
    assert f"({ZONE})" in page.text and "zed-person" not in page.text and "the access log keeps none" in page.text
    assert "outside_schedule" in page.text and "spoof" in page.text and "not_recognised" in page.text
    assert rows_of(browser.get("/ui/decisions?person=ann").text) == ["2026-07-02 08:00:00", "2026-07-01 08:00:00"]
    assert rows_of(browser.get("/ui/decisions?door=back").text) == ["2026-07-02 08:00:00"]
    assert rows_of(browser.get("/ui/decisions?outcome=deny&reason=not_recognised").text) == ["2026-07-01 08:01:00"]
    assert rows_of(browser.get("/ui/decisions?decision=accept").text) == ["2026-07-02 08:00:00", "2026-07-01 08:00:00"]
    # a day is the site's day: 2026-07-01 in New York holds the first two
    day = browser.get("/ui/decisions?since=2026-07-01&until=2026-07-01").text
    assert rows_of(day) == ["2026-07-01 08:01:00", "2026-07-01 08:00:00"]
    # Until with a minute holds that minute (an operator asking "until 08:01" means it too)
    assert rows_of(browser.get("/ui/decisions?since=2026-07-01T08:00&until=2026-07-01T08:00").text) == [
        "2026-07-01 08:00:00"]
    assert rows_of(browser.get("/ui/decisions?since=2026-07-01T08:00&until=2026-07-01T08:01").text) == [
        "2026-07-01 08:01:00", "2026-07-01 08:00:00"]
    bad = browser.get("/ui/decisions?since=yesterday")
    assert bad.status_code == 200 and "yesterday" in bad.text and rows_of(bad.text) == []
    # the other tenant's record is not there even by its address
    assert browser.get("/ui/decisions/edge-z/1").status_code == 404
    detail = browser.get("/ui/decisions/edge-a/3")
    assert detail.status_code == 200 and "outside_schedule" in detail.text and "2026-07-02 08:00:00" in detail.text
    assert "keeps no face image" in detail.text
    assert "This was" not in detail.text  # a viewer sees no correction form


def test_decisions_come_in_pages_of_fifty_with_and_without_htmx(hub, tmp_path):
    upload(hub.store, tmp_path, "edge-a", [
        {"at": T0 + i, "door": "main", "person_id": f"p{i:03d}", "decision": "reject", "outcome": "deny",
         "reason": "not_recognised"} for i in range(120)])
    browser = Browser(hub.url)
    browser.login("vera")
    seen: list[str] = []
    url = "/ui/decisions?outcome=deny"
    pages = 0
    while url:
        page = browser.get(url, headers={"HX-Request": "true", "HX-Target": "decisions"} if pages % 2 else {})
        assert page.status_code == 200
        # htmx asks for the rows only: no whole page around them
        assert ("<html" in page.text) == (pages % 2 == 0) and '<div id="decisions">' in page.text
        seen += re.findall(r'<a href="/ui/persons/(p\d+)">', page.text)
        nxt = re.search(r'<a href="([^"]+)">Older</a>', page.text)
        url = nxt[1].replace("&amp;", "&") if nxt else ""
        pages += 1
    # a boosted link (htmx, the whole body swapped) gets the whole page
    boosted = browser.get("/ui/decisions", headers={"HX-Request": "true", "HX-Boosted": "true"})
    assert "<html" in boosted.text and 'name="outcome"' in boosted.text
    assert pages == 3 and seen == [f"p{i:03d}" for i in reversed(range(120))]  # each once, newest first


@pytest.fixture(scope="module")
def model_hub(tmp_path_factory, faces_dir, models_dir):
    with console_hub(tmp_path_factory.mktemp("decisions")) as hub:
        client = hub.client(timeout=60.0, retries=0)
        enrol_five(client, faces_dir)
        upload(hub.store, tmp_path_factory.mktemp("log"), "edge-a", [
            {"at": T0, "door": "main", "decision": "reject", "outcome": "deny", "reason": "not_recognised",
             "score": 0.2, "liveness": "live"}])
        yield hub, client
        client.close()


def faces_of(client, person_id: str) -> int:
    return len(client.getfaceids(person_id)["face_ids"])


def test_this_was_shows_the_scores_before_saving_and_keeps_a_look_alike_out(model_hub, faces_dir):
    hub, client = model_hub
    photo = (faces_dir / "five_celebrity/Madonna/val_1.jpg").read_bytes()
    browser = Browser(hub.url)
    browser.login("otto")
    page = browser.get("/ui/decisions/edge-a/1")
    assert "This was" in page.text and "upload" in page.text.lower()
    before = faces_of(client, "madonna"), faces_of(client, "elton_john")
    # Madonna's photo named Elton John: the comparison shows it is closer to Madonna
    files = {"photo": ("moment.jpg", photo, "image/jpeg")}
    shown = browser.post("/ui/decisions/edge-a/1/compare", {"person_id": "elton_john"}, files=files,
                         headers={"HX-Request": "true", "HX-Target": "comparison"})
    assert shown.status_code == 200 and shown.text.startswith('<div id="comparison">')
    assert "Nearest other person" in shown.text and "madonna" in shown.text and "Careful" in shown.text
    margin = float(re.search(r"<th>Margin</th><td>(-?[0-9.]+)", shown.text)[1])
    assert margin < 0  # closer to Madonna than to Elton John
    held = browser.post("/ui/decisions/edge-a/1/train", {"person_id": "elton_john"}, files=files)
    assert held.status_code == 409 and "not saved" in held.text
    assert (faces_of(client, "madonna"), faces_of(client, "elton_john")) == before  # nothing stored
    # named right, it is added, tagged with the decision it corrects
    right = browser.post("/ui/decisions/edge-a/1/compare", {"person_id": "madonna"}, files=files)
    assert right.status_code == 200 and "Nothing against adding it" in right.text
    assert faces_of(client, "madonna") == before[0]  # a comparison stores nothing
    saved = browser.post("/ui/decisions/edge-a/1/train", {"person_id": "madonna"}, files=files)
    assert saved.status_code == 200 and "added to madonna" in saved.text
    assert faces_of(client, "madonna") == before[0] + 1
    face_id = re.search(r"face (\d+)\)", saved.text)[1]
    assert hub.store.face(APPID, face_id).tag == "decision edge-a/1"
    # a person who is not enrolled, or no photo: refused, nothing stored
    assert "unknown" in browser.post("/ui/decisions/edge-a/1/train", {"person_id": "nobody-here"},
                                     files=files).text.lower()
    assert browser.post("/ui/decisions/edge-a/1/train", {"person_id": "madonna"}).status_code == 400
    assert faces_of(client, "madonna") == before[0] + 1


def test_crafted_numbers_and_dates_get_a_page_not_a_500(hub, tmp_path):
    """'²' is a digit Python's int() refuses; 9999-12-31's next midnight is past the last date;
    a cursor's seq past 64 bits fails the query itself: each was a 500 for a logged-in user."""
    import base64

    upload(hub.store, tmp_path, "edge-a", [{"at": T0, "door": "main", "person_id": "ann", "decision": "accept",
                                            "outcome": "grant", "reason": "granted"}])
    browser = Browser(hub.url)
    browser.login("vera")
    assert browser.get("/ui/persons?page=²").status_code == 200
    assert browser.get("/ui/decisions/edge-a/²").status_code == 404
    until = browser.get("/ui/decisions?until=9999-12-31")
    assert until.status_code == 200 and "past the last date" in until.text, until.status_code  # said on the page
    for cursor in ([T0, "edge-a", 10**30], [float("inf"), "edge-a", 1], [T0, "edge-a", True]):
        after = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode()
        answer = browser.get(f"/ui/decisions?after={after}")
        assert answer.status_code == 200 and "not a cursor this hub gave" in answer.text, (cursor, answer.status_code)
