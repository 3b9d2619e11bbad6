"""Doors at a glance over HTTP on a real hub on loopback, fed by real edge syncs (the daemon's
Syncer and EdgeCache, reporting what they run): last contact, applied cursor against the hub's
head, pack, liveness, door, health; and whether a deleted person is gone from every door."""

from __future__ import annotations

import html
import re

import pytest

from edge.api.client import CloudApiError
from edge.core.syncwire import report_fields
from edge.daemon.cache import EdgeCache
from edge.daemon.sync import Syncer
from tests.hub.ui.support import Browser, console_hub
from tests.support.broker import enrol_five
from tests.support.hub import APPID, OTHER_APPID, served_fingerprint


@pytest.fixture(scope="module")
def hub(tmp_path_factory, faces_dir, models_dir):
    with console_hub(tmp_path_factory.mktemp("doors")) as hub:
        client = hub.client(timeout=60.0, retries=0)
        enrol_five(client, faces_dir)
        yield hub, client
        client.close()


def edge(client, fingerprint: str, tmp_path, edge_id: str, door: str = "locked, mode normal",
         groups: list[str] | None = None) -> Syncer:
    return Syncer(client, EdgeCache(tmp_path / f"{edge_id}.db"), fingerprint, group_ids=groups,
                  report=lambda: {"edge_id": edge_id, **report_fields(fingerprint, "on", door, "ok")})


def row_of(html: str, edge_id: str) -> str:
    return re.search(rf"<tr>\s*<td>{edge_id}</td>(.*?)</tr>", html, re.S)[1]


def test_each_edge_reports_its_sync_and_a_deletion_is_seen_reaching_every_door(hub, tmp_path):
    server, client = hub
    fingerprint = served_fingerprint(client)
    a = edge(client, fingerprint, tmp_path, "edge-a")
    b = edge(client, fingerprint, tmp_path, "edge-b", door="held, mode normal, relay: no feedback",
             groups=["staff", "night"])
    head = server.store.last_seq(APPID)
    # a reporting edge asks once more after applying a page: the hub learns the cursor it has now
    assert a.sync_once()["status"] == "ok"
    # edge-b is in the middle of its backlog: one page of two changes per round
    b.page_size, b.max_pages = 2, 1
    assert b.sync_once()["status"] == "syncing"
    browser = Browser(server.url)
    browser.login("vera")
    page = browser.get("/ui/doors").text
    assert "up to date" in row_of(page, "edge-a") and f"applied {head} of {head}" in row_of(page, "edge-a")
    assert "change(s) behind" in row_of(page, "edge-b") and "applied 0 of" in row_of(page, "edge-b")
    assert fingerprint in row_of(page, "edge-a") and "not served" not in row_of(page, "edge-a")
    assert "held, mode normal, relay: no feedback" in row_of(page, "edge-b") and "s ago" in row_of(page, "edge-a")
    # both synced with the appid's key, not one bound to them: the page says what that risks and the fix
    # the command makes it a key for the groups it serves: one without them would hold everyone
    assert "whoever takes this edge" in row_of(page, "edge-a") and "every group" in row_of(page, "edge-a")
    assert "<code>edge-verifier hub edgekey --edge-id edge-a</code>" in row_of(page, "edge-a")
    row_b = row_of(page, "edge-b")
    assert "<td>night, staff</td>" in row_b
    assert "<code>edge-verifier hub edgekey --edge-id edge-b --group night --group staff</code>" in row_b

    client.delperson("madonna")
    gone_at = server.store.last_seq(APPID)
    reach = browser.get("/ui/doors?person=madonna").text
    assert f"change {gone_at}" in reach and "deleted" in reach
    assert re.search(r"Not yet applied by: edge-a, edge-b", reach) and "may still pass there" in reach
    a.sync_once()  # pulls the deletion and says so
    assert a.cache.gallery(a.thresholds).person_ids.isdisjoint({"madonna"})
    reach = browser.get("/ui/doors?person=madonna").text
    assert "Not yet applied by: edge-b" in reach
    b.page_size, b.max_pages = 500, 100
    assert b.sync_once()["status"] == "ok"
    reach = browser.get("/ui/doors?person=madonna").text
    assert "madonna is gone from every door" in reach
    assert "No change names" in browser.get("/ui/doors?person=never-here").text
    # the other tenant sees none of these edges
    other = Browser(server.url)
    other.login("zed")
    assert "No edge has reported yet" in other.get("/ui/doors").text
    assert server.store.edge_reports(OTHER_APPID) == []


def test_a_report_that_is_not_short_printable_text_is_refused_and_markup_is_shown_as_text(hub, tmp_path):
    server, client = hub
    with pytest.raises(CloudApiError) as refused:
        client.sync(0, "x", report={"edge_id": "edge-evil", "edge_door": "bell\x07"})
    assert refused.value.code == 21 and "edge_door" in refused.value.message
    with pytest.raises(CloudApiError):
        client.sync(0, "x", report={"edge_id": "edge-evil", "edge_pack": "p" * 129})
    with pytest.raises(CloudApiError):
        client.sync(0, "x", report={"edge_id": "bad id with spaces"})
    assert "edge-evil" not in [r.edge_id for r in server.store.edge_reports(APPID)]
    # a fingerprint the hub does not store is refused, but the edge is seen (it is worth knowing)
    with pytest.raises(CloudApiError):
        client.sync(0, "not-served", report={"edge_id": "edge-old", **report_fields("not-served", "off",
                                                                                        "<b>open</b>", "degraded")})
    browser = Browser(server.url)
    browser.login("vera")
    row = row_of(browser.get("/ui/doors").text, "edge-old")
    assert "not served by this hub" in row and "&lt;b&gt;open&lt;/b&gt;" in row and "<strong>degraded</strong>" in row
    # the command the page gives for a door on the appid's key names the edge and its groups as
    # reported: ids the API accepts may hold shell syntax, which an operator would paste into a root shell
    with pytest.raises(CloudApiError):
        client.sync(0, "not-served", group_ids=["g`id`"], report={"edge_id": "door$(reboot);'", "edge_health": "ok"})
    page = html.unescape(browser.get("/ui/doors").text)
    assert "edge-verifier hub edgekey --edge-id 'door$(reboot);'\"'\"'' --group 'g`id`'" in page


@pytest.mark.fast
def test_without_its_models_the_hub_still_shows_the_doors_and_a_page_that_needs_them_says_why(tmp_path):
    """The doors page asked the models which pack the hub serves and crashed the request when
    they could not load (a reset connection, no answer); an unexpected API error of any page is
    now a page that says what is wrong."""
    with console_hub(tmp_path, vision={"models_dir": str(tmp_path / "no-models")}) as hub:
        browser = Browser(hub.url)
        assert browser.login("otto").status_code == 303
        doors = browser.get("/ui/doors")
        assert doors.status_code == 200 and "Doors" in doors.text
        import cv2
        import numpy as np

        photo = cv2.imencode(".jpg", np.full((96, 96, 3), 128, np.uint8))[1].tobytes()  # decodes; no face
        check = browser.post("/ui/enrol/check", {"person_id": "x"}, files=[("photos", ("a.jpg", photo, "image/jpeg"))])
        assert check.status_code in (200, 400, 503) and "face models unavailable" in check.text, check.text[:300]
