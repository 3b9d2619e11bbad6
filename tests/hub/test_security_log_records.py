"""A door's access log records are hostile until checked: the hub checked their chain and that
`at` was a finite number, not the types its readers rely on. One door's key (a terminal taken
off the wall, or a broken door) uploaded a decision dated 1e300, and every page of the site's
decisions answered 500; one whose `detail` was a string, and every door asking for the other
doors' claim refusals failed its sync (deletions and lifts no longer reached any door) and the
person's console page answered 500. Records now have the shapes the readers need, and the
readers survive a record stored before that check."""

from __future__ import annotations

import json
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


def _one_record(**fields) -> list[dict]:
    """A chain of one decision record holding `fields`, its hash taken where one can be."""
    from edge.core.access_chain import GENESIS, record_hash

    r = {"seq": 1, "record_id": "r1", "at": time.time(), "kind": "decision", "prev": GENESIS, "door": "front",
         **fields}
    try:
        r["hash"] = record_hash(r)
    except (ValueError, RecursionError):  # none can be taken of it: sent as a hostile upload sends it
        r["hash"] = "f" * 64
    return [r]


def _nested(depth: int) -> list:
    out: list = []
    for _ in range(depth):
        out = [out]
    return out


@pytest.mark.parametrize("why", ["lone surrogate", "NUL", "nested too deep", "a time of 400 digits"])
def test_records_that_failed_the_hub_with_an_internal_error_are_malformed(store, why):
    """Each of these answered 213 with a traceback in the hub's log (50 a second from a door's
    key): a lone surrogate (valid JSON text, no UTF-8: no hash could be taken), a NUL (PostgreSQL
    refuses it in text: the hub then also said its storage was failing), a `detail` nested deeper
    than the JSON writer recurses."""
    import sys

    fields = {"lone surrogate": {"reason": "\ud800"}, "NUL": {"person_id": "ma\x00donna"},
              "nested too deep": {"detail": {"a": _nested(sys.getrecursionlimit() + 10)}},
              "a time of 400 digits": {"at": 10 ** 400}}[why]  # math.isfinite of it raised
    with pytest.raises(Exception) as refused:
        store.store_access_records("app", "door-1", _one_record(**fields))
    assert refused.value.code == LOG_MALFORMED, refused.value  # type: ignore[attr-defined]
    assert store.access_chain("app", "door-1") is None


def test_a_record_id_used_twice_is_malformed_not_an_internal_error(store, tmp_path):
    from edge.core.access_chain import record_hash

    records = _log_with(tmp_path / "a.db", time.time(), person_id="madonna")
    assert store.store_access_records("app", "door-1", records) == (1, 1)
    twin = _log_with(tmp_path / "b.db", time.time(), person_id="ann")  # a fresh chain's first record ...
    second = dict(twin[0], seq=2, prev=records[0]["hash"], record_id=records[0]["record_id"])  # ... reusing an id
    second["hash"] = record_hash(second)
    with pytest.raises(Exception) as refused:
        store.store_access_records("app", "door-1", [second])
    assert refused.value.code == LOG_MALFORMED and "record_id" in str(refused.value)  # type: ignore[attr-defined]
    assert store.access_chain("app", "door-1")["seq"] == 1


def test_a_record_sent_again_with_a_forged_crop_files_no_crop(store, tmp_path):
    """A record sent again (a lost answer) was taken as the stored one when its `hash` field
    alone matched; the crop check then read the copy's `detail`: a forged face crop was filed
    under a stored record that names none."""
    import base64
    import hashlib

    from edge.core.access_chain import LOG_EDITED, parse_crops

    records = _log_with(tmp_path / "a.db", time.time(), person_id="madonna")
    assert store.store_access_records("app", "door-1", records) == (1, 1)
    forged = b"a face that was never there"
    copy = dict(records[0], detail={"face_crop": hashlib.sha256(forged).hexdigest()})  # hash field kept
    crops = parse_crops(json.dumps([{"seq": 1, "sealed": base64.b64encode(forged).decode()}]), [copy])
    with pytest.raises(Exception) as refused:
        store.store_access_records("app", "door-1", [copy], crops)
    assert refused.value.code == LOG_EDITED  # type: ignore[attr-defined]
    assert store.access_crop("app", "door-1", 1) is None


def test_a_crop_list_naming_no_number_and_a_huge_cursor_time_are_bad_input():
    import base64

    from edge.core.access_chain import ChainError, decode_cursor, parse_crops

    with pytest.raises(ChainError):  # a record's seq that is a list made the crop check raise TypeError
        parse_crops('[{"seq": 1, "sealed": ""}]', [{"seq": [1]}])

    for at in (10 ** 400, float("inf")):
        text = base64.urlsafe_b64encode(json.dumps([at, "e", 1]).encode()).decode()
        with pytest.raises(ValueError, match="not a cursor"):
            decode_cursor(text)


def test_a_door_key_cannot_fill_the_hubs_disk_with_access_records(store, tmp_path):
    """Nothing bounded what a door's key uploaded but its request rate (50 a second, 1,000
    records each): a key taken off the wall wrote tens of GB an hour into the store every
    tenant shares. Each edge may upload [limits] access_records_per_day a day, a week's worth
    at once (a door back from a week offline sends its backlog); beyond, code 15, the edge
    sends the rest later; another door is not held back."""
    from edge.api.ratelimit import RecordBudget
    from edge.core import errors
    from edge.core.errors import ApiError
    from edge.hub.service import HubService

    service = HubService(store, vision=None, limits=Limits(access_records_per_day=1000))  # type: ignore[arg-type]
    log = AccessLog(tmp_path / "taken.db", KEY, clock=time.time)
    for i in range(7001):
        log.append("decision", door="front", person_id=f"p{i}", decision="reject", outcome="deny", reason="r")
    for batch in range(7):  # a week's worth at once
        records = log.records(batch * 1000, 1000)
        assert service.uploadlog("app", "door-taken", canonical(records))["head"] == (batch + 1) * 1000
    with pytest.raises(ApiError) as over:
        service.uploadlog("app", "door-taken", canonical(log.records(7000, 1000)))
    assert over.value.code == errors.RATE_LIMITED and store.access_chain("app", "door-taken")["seq"] == 7000
    other = _log_with(tmp_path / "other.db", time.time(), person_id="madonna")
    assert service.uploadlog("app", "door-b", canonical(other))["stored"] == 1

    budget = RecordBudget(1000 / 86_400, 7000)  # a day's worth comes back in a day, never more than a week's
    assert budget.take("k", 7000, now=0.0) and not budget.take("k", 1, now=1.0)
    assert budget.take("k", 999, now=86_400.0) and not budget.take("k", 10, now=86_400.0)
    assert budget.take("k", 7000, now=86_400.0 * 30) and not budget.take("k", 1, now=86_400.0 * 30)


def test_access_records_and_faces_do_not_stay_for_good(store, tmp_path):
    """Nothing deleted the edges' access records or their sealed face crops on the hub, and
    deleting a person left their faces at the doors. Records received more than [storage]
    access_log_days ago go with their crops (each edge's chain head stays: its next upload
    continues as ever), and a deleted person's crops go with them."""
    import base64

    from edge.door.log_crops import CropSeal
    from edge.hub.service import HubService

    now = time.time()
    times = iter([now - 400 * 86400, now - 10, now - 5, now])
    log = AccessLog(tmp_path / "door.db", KEY, clock=lambda: next(times))
    seal = CropSeal.from_edge_key(KEY)
    for i, person in enumerate(("ann", "ann", "bob")):
        log.append("decision", door="front", person_id=person, decision="accept", outcome="grant",
                   reason="granted", event_id=f"e{i}", face_crop=seal.seal(f"e{i}", b"\xff\xd8face\xff\xd9"))
    vec = np.ones(8, np.float32) / np.sqrt(8)
    store.create_person("app", "bob", ["g"], "", "", FaceRecord(store.new_face_id(), "bob", (1, 2, 80, 80),
                                                                 [[1.0, 2.0]] * 5, embeddings={"fp": vec}), Limits())
    service = HubService(store, vision=None, access_log_s=365 * 86400)  # type: ignore[arg-type]
    crops = {seq: sealed for seq, sealed in log.crops(0, 10).items()}
    # the first record reached the hub 400 days ago (an upload then), the others now
    assert store.store_access_records("app", "door-1", log.records()[:1], {1: crops[1]},
                                      received=now - 400 * 86400) == (1, 1)
    later = json.dumps([{"seq": seq, "sealed": base64.b64encode(crops[seq]).decode()} for seq in (2, 3)])
    assert service.uploadlog("app", "door-1", canonical(log.records(1)), later)["stored"] == 2
    kept = [seq for seq in (1, 2, 3) if store.access_crop("app", "door-1", seq) is not None]
    assert [r["seq"] for r in store.search_access("app", {})[0]] == [2, 3] and kept == [2, 3]  # the old one gone
    store.delete_person("app", "bob")
    assert store.access_crop("app", "door-1", 3) is None and store.access_crop("app", "door-1", 2) is not None
    assert [r["seq"] for r in store.search_access("app", {})[0]] == [2, 3]  # bob's record kept, his face gone
    log.append("door", door="front", reason="contact_open")
    assert service.uploadlog("app", "door-1", canonical(log.records(3)))["head"] == 4  # the chain goes on


def test_a_door_clock_set_back_keeps_its_records_on_the_hub(store, tmp_path):
    """A Pi has no battery clock: started offline after weeks switched off, its records are dated
    weeks back. The hub trimmed by that date, so an upload older than [storage] access_log_days
    by the door's clock was deleted within a minute of arriving, and the door, its clock then
    corrected, pruned its own copies as held by the hub: both copies gone. Retention counts from
    when the hub received a record."""
    from edge.hub.service import HubService

    set_back = time.time() - 40 * 86400
    service = HubService(store, vision=None, access_log_s=30 * 86400)  # type: ignore[arg-type]
    records = _log_with(tmp_path / "door.db", set_back, person_id="madonna")
    assert service.uploadlog("app", "door-1", canonical(records))["stored"] == 1
    assert [r["at"] for r in store.search_access("app", {})[0]] == [set_back]  # kept: received now
    assert store.trim_access_log(time.time() + 1) == 1  # and goes once retention has passed since



def test_a_record_an_older_hub_process_stored_during_the_upgrade_is_kept(store, tmp_path):
    """A hub process of the previous release still serving beside the upgraded one (PostgreSQL,
    a rolling upgrade) stores records without `received` (0): the new process's trim took them
    for 1970 and deleted them at the next upload, while the door counted them as held. They count
    as received when the trim first sees them."""
    records = _log_with(tmp_path / "door.db", time.time(), person_id="madonna")
    store.store_access_records("app", "door-1", records)
    with store._write() as c:  # as the older code's INSERT, without the column, leaves it
        store._q(c, "UPDATE access_records SET received = 0")
    assert store.trim_access_log(time.time() - 86400) == 0
    assert [r["person_id"] for r in store.search_access("app", {})[0]] == ["madonna"]
    assert store.trim_access_log(time.time() + 1) == 1  # and retention then runs from that time
