"""A badge's lockout on the console, over HTTP on a real hub: the person's page says how many of
their claims the doors refused on the face in the last day (from the uploaded access logs), and
an operator lifts the lockout at every door (docs/daemon.md#a-stolen-badge-gets-a-few-tries); a
viewer cannot."""

from __future__ import annotations

import re
import time

from edge.door.access_log import AccessLog
from tests.hub.ui.support import Browser, console_hub
from tests.support.hub import APPID


def claims_text(browser: Browser) -> str:
    page = browser.get("/ui/persons/madonna").text
    return " ".join(re.search(r'<p id="claims">(.*?)</p>', page, re.S)[1].split())


def test_an_operator_sees_the_refused_claims_and_lifts_the_lockout_a_viewer_cannot(
        tmp_path, faces_dir, models_dir):
    now = time.time()
    times = iter([now - 120, now - 60])
    log = AccessLog(tmp_path / "a.db", b"edge-key-console-lift", clock=lambda: next(times))
    for _ in range(2):
        log.append("decision", door="main", person_id="madonna", decision="reject", outcome="deny", reason="r",
                   detail={"claim": "madonna", "claim_lockout": "refused"})
    with console_hub(tmp_path / "hub") as hub:
        client = hub.client(timeout=60.0, retries=0)
        try:
            client.newperson("madonna", ["staff"], (faces_dir / "five_celebrity/Madonna/train_1.jpg").read_bytes())
            hub.store.store_access_records(APPID, "edge-a", log.records())
            vera = Browser(hub.url)
            vera.login("vera")
            shown = claims_text(vera)
            assert shown.startswith("Claims refused on the face at the doors in the last day: 2, the last at")
            assert "Lift the badge" not in vera.get("/ui/persons/madonna").text
            assert vera.post("/ui/persons/madonna/lift").status_code == 403
            assert hub.store.claim_lifts(APPID, 0) == {}
            otto = Browser(hub.url)
            otto.login("otto")
            assert otto.post("/ui/persons/madonna/lift", csrf=False).status_code == 403  # no CSRF token: refused
            lifted = otto.post("/ui/persons/madonna/lift")
            assert lifted.status_code == 303 and lifted.headers["location"] == "/ui/persons/madonna"
            assert [by for _, by in hub.store.claim_lifts(APPID, 0).values()] == ["console:otto"]
            text = claims_text(otto)  # the refusals before the lift count nowhere now
            assert text.startswith("No claim refused on the face at the doors in the last day.")
            assert re.search(r"Lockout last lifted at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d by console:otto\.", text)
            assert otto.post("/ui/persons/nobody/lift").status_code == 404  # no such person
        finally:
            client.close()
