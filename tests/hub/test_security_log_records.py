"""A door's access log records are hostile until checked: the hub checked their chain and that
`at` was a finite number, not the types its readers rely on. One door's key (a terminal taken
off the wall, or a broken door) uploaded a decision dated 1e300, and every page of the site's
decisions answered 500; one whose `detail` was a string, and every door asking for the other
doors' claim refusals failed its sync (deletions and lifts no longer reached any door) and the
person's console page answered 500. Records now have the shapes the readers need, and the
readers survive a record stored before that check."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge.core.access_chain import LOG_MALFORMED, canonical
from edge.door.access_log import AccessLog
from edge.hub.store import FaceRecord, Limits

KEY = b"a door's log key"


@pytest.fixture
def store(hub_store):
    return hub_store


def _log_with(path, at: float, **fields) -> list[dict]:
    """A sound chain of one decision record (its hash and links right) holding `fields`."""
    log = AccessLog(path, KEY, clock=lambda: at)
    log.append("decision", **{"door": "front", "decision": "reject", "outcome": "deny", "reason": "not_accepted",
                               **fields})
    return log.records()


@pytest.mark.parametrize("at, fields", [
    (1e300, {"person_id": "madonna"}),  # no date can show it
    (-5.0, {"person_id": "madonna"}),
    (time.time(), {"person_id": "madonna", "detail": "x"}),
    (time.time(), {"person_id": ["madonna"]}),
    (time.time(), {"person_id": "madonna", "door": 7}),
])
def test_a_record_the_hubs_readers_would_choke_on_is_refused_on_upload(store, tmp_path, at, fields):
    records = _log_with(tmp_path / "door.db", at, **fields)
    with pytest.raises(Exception) as refused:
        store.store_access_records("app", "door-1", records)
    assert refused.value.code == LOG_MALFORMED  # type: ignore[attr-defined]
    assert store.access_chain("app", "door-1") is None  # nothing of it stored
    fine = _log_with(tmp_path / "fine.db", time.time(), person_id="madonna", detail={"claim": True})
    assert store.store_access_records("app", "door-1", fine) == (1, 1)


def _stored_before_the_check(store, appid: str, edge_id: str, records: list[dict]) -> None:
    """As the hub stored records before their shapes were checked (its INSERT, no check)."""
    with store._write(appid) as c:
        for r in records:
            store._q(c, "INSERT INTO access_records (appid, edge_id, seq, record_id, at, kind, door, person_id,"
                        " decision, outcome, reason, hash, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                     (appid, edge_id, r["seq"], r["record_id"], float(r["at"]), r["kind"], str(r.get("door", "")),
                      str(r.get("person_id", "")), str(r.get("decision", "")), str(r.get("outcome", "")),
                      str(r.get("reason", "")), r["hash"], canonical(r)))


def test_a_bad_record_stored_before_breaks_no_sync_and_no_page(tmp_path, models_dir):
    from edge.hub.ui.sitetime import shown
    from tests.hub.ui.support import Browser, console_hub
    from tests.support.hub import APPID, served_fingerprint

    with console_hub(tmp_path / "hub") as hub, hub.client(timeout=30, retries=0) as client:
        vec = np.ones(4, np.float32) / 2
        hub.store.create_person(APPID, "madonna", ["staff"], "Madonna", "", FaceRecord(
            hub.store.new_face_id(), "madonna", (1, 2, 90, 90), [[1.0, 2.0]] * 5, quality=0.9,
            embeddings={"fp": vec}), Limits())
        now = time.time()
        _stored_before_the_check(hub.store, APPID, "door-bad", _log_with(tmp_path / "a.db", 1e300, person_id="madonna"))
        _stored_before_the_check(hub.store, APPID, "door-bad2", _log_with(
            tmp_path / "b.db", now - 60, person_id="madonna", detail="x"))
        _stored_before_the_check(hub.store, APPID, "door-bad3", _log_with(
            tmp_path / "c.db", now - 30, person_id=["madonna"], detail={"claim_lockout": "refused"}))

        browser = Browser(hub.url)
        browser.login("vera")
        decisions = browser.get("/ui/decisions")
        assert decisions.status_code == 200 and "not a date" in decisions.text
        assert browser.get("/ui/persons/madonna").status_code == 200
        # another door's sync asking for the site's claim refusals still gets its page
        page = client.sync(0, served_fingerprint(client), report={"edge_id": "door-good"}, refusals_since=now - 3600)
        assert page["claim_refusals"] == [] and any(c["person_id"] == "madonna" for c in page["changes"])
    assert shown(1e300, None).startswith("(not a date")
