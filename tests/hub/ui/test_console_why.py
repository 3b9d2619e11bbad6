""""Why was Madonna refused at the back door at 08:12?", answered from the console alone: the
person typed as the name her page shows, a minute as Until, the reason in plain words with the
badge claim and its lockout, a link from her page to her decisions. A real hub, the records
uploaded as a door uploads them (the door's access log), the site's rules in Europe/Berlin."""

from __future__ import annotations

import json
from datetime import datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from edge.door.access_log import AccessLog
from edge.hub.store.base import FaceRecord, Limits
from edge.hub.ui.sitetime import parsed, shown
from tests.hub.ui.support import Browser, console_hub
from tests.support.hub import APPID

BERLIN = ZoneInfo("Europe/Berlin")
AT_0812 = datetime(2026, 12, 7, 8, 12, 30, tzinfo=BERLIN).timestamp()


@pytest.fixture
def hub(tmp_path):
    with console_hub(tmp_path) as hub:
        hub.store.set_rules(APPID, json.dumps({"format": 1, "timezone": "Europe/Berlin", "groups": ["staff"],
                                               "doors": [{"id": "back"}], "schedules": {}, "access_levels": []}))
        face = FaceRecord(hub.store.new_face_id(), "madonna", (1, 2, 80, 80), [[1.0, 2.0]] * 5,
                          embeddings={"fp": np.ones(8, np.float32) / np.sqrt(8)})
        hub.store.create_person(APPID, "madonna", ["staff"], "Madonna", "", face, Limits())
        times = iter([AT_0812 - 3600, AT_0812])
        log = AccessLog(tmp_path / "back.db", b"k" * 32, clock=lambda: next(times))
        log.append("decision", door="back", person_id="madonna", decision="accept", outcome="grant", reason="granted")
        log.append("decision", door="back", person_id="madonna", decision="reject", outcome="deny",
                   reason="not_accepted:claim_locked_out", detail={"claim": "madonna"})
        hub.store.store_access_records(APPID, "edge-back", log.records())
        yield hub


def test_why_was_madonna_refused_at_the_back_door_at_0812(hub):
    vera = Browser(hub.url)
    vera.login("vera")
    found = vera.get("/ui/decisions?person=Madonna&since=2026-12-07T08:12&until=2026-12-07T08:12").text
    assert "decisions of madonna (Madonna)" in found
    assert "2026-12-07 08:12:30" in found and "07:12:30" not in found  # the minute asked, its own time
    assert "the badge was locked out after repeated refusals" in found
    row = vera.get("/ui/decisions/edge-back/2").text
    assert "Why" in row and "lift the lockout on the person&#39;s page" in row
    assert 'href="/ui/persons/madonna#claims"' in row
    assert 'href="/ui/decisions?person=madonna"' in vera.get("/ui/persons/madonna").text
    mistyped = vera.get("/ui/decisions?since=08:00").text
    assert "type a date as 2026-12-07, or a time as 2026-12-07T08:00" in mistyped
    assert "isoformat" not in mistyped


def test_a_time_the_clocks_show_twice_says_its_offset():
    first = datetime(2026, 10, 25, 0, 30, tzinfo=ZoneInfo("UTC")).timestamp()  # 02:30 CEST
    second = first + 3600  # 02:30 CET, an hour later
    assert shown(first, BERLIN) == "2026-10-25 02:30:00 (UTC+0200)"
    assert shown(second, BERLIN) == "2026-10-25 02:30:00 (UTC+0100)"
    assert shown(first - 7200, BERLIN) == "2026-10-25 00:30:00"  # no doubt: as before
    assert parsed("2026-12-07T08:12", BERLIN, end_of_day=True) == parsed("2026-12-07T08:13", BERLIN)
