"""Face crops in the access log (docs/access.md#face-crops): off by default; when the site enables
them, each decision's crop is sealed (AES-256-GCM, a key derived from the edge's own key, the
decision's event_id bound in), kept beside its record, which names its sha256 (the chain covers
the hash, not the image), pruned with the record, and uploaded only where the site enables it;
the hub checks each crop is its record's and stores it sealed. A real access log, a real hub on
loopback (SQLite and PostgreSQL), a real JPEG of a face."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from edge.api.client import CloudApiError
from edge.core.access_chain import LOG_CROP, canonical
from edge.core.domain import Decision, Mode, Source, TrackLiveness
from edge.daemon.config import EdgeSettings
from edge.daemon.decide import Outcome
from edge.daemon.door_link import DoorLink
from edge.door.access_log import AccessLog
from edge.door.access_upload import Uploader
from edge.door.log_crops import CropError, CropSeal
from tests.door.test_door_link import Recorder, gallery
from tests.support.hub import older_sqlite_store, start_hub

KEY = b"the-edge-key-for-crop-tests-0123456789"
T0 = 1_800_000_000.0


@pytest.fixture
def jpeg(faces_dir) -> bytes:
    return (faces_dir / "five_celebrity/Madonna/val_1.jpg").read_bytes()


def clocked(path, key: bytes = KEY, **kw) -> AccessLog:
    t = [T0]

    def clock() -> float:
        t[0] += 600
        return t[0]
    return AccessLog(path, key, clock=clock, **kw)


def test_a_sealed_crop_opens_only_for_its_decision_and_with_the_edges_key(jpeg) -> None:
    seal = CropSeal.from_edge_key(KEY)
    sealed = seal.seal("ev-1", jpeg)
    assert jpeg not in sealed and sealed != seal.seal("ev-1", jpeg)  # a fresh nonce each time
    assert CropSeal.from_edge_key(KEY).open("ev-1", sealed) == jpeg
    with pytest.raises(CropError):
        seal.open("ev-2", sealed)  # moved onto another decision's record
    with pytest.raises(CropError):
        CropSeal.from_edge_key(b"another-edge's-key").open("ev-1", sealed)
    altered = bytearray(sealed)
    altered[40] ^= 1
    with pytest.raises(CropError):
        seal.open("ev-1", bytes(altered))
    assert "key" not in repr(seal).replace("<key>", "") and KEY.decode() not in repr(seal)


def test_the_record_names_its_crops_hash_verify_checks_it_and_prune_removes_it(tmp_path, jpeg) -> None:
    log = clocked(tmp_path / "log.db", retention_days=1)
    sealed = CropSeal.from_edge_key(KEY).seal("ev-1", jpeg)
    first = log.append("decision", person_id="ann", outcome="grant", event_id="ev-1", face_crop=sealed)
    log.append("decision", person_id="ben", outcome="deny", event_id="ev-2")
    assert first["detail"]["face_crop"] == hashlib.sha256(sealed).hexdigest()
    assert "face_crop" not in (log.records()[1].get("detail") or {})
    assert log.crops(1, 2) == {1: sealed} and log.verify().ok
    # a crop swapped for another (another face, or the same re-sealed) is found
    other = CropSeal.from_edge_key(KEY).seal("ev-1", jpeg)
    log._db.execute("UPDATE crops SET sealed = ? WHERE seq = 1", (other,))
    assert log.verify().problems == ["face crop of record 1 does not match its record"]
    log._db.execute("UPDATE crops SET sealed = ? WHERE seq = 1", (sealed,))
    # retention: the crop goes with its record, the chain still verifies
    log.mark_uploaded(2)
    assert log.prune(now=T0 + 10 * 86400) == 2 and log.crops(0, 10) == {} and log.verify().ok


def decide(link: DoorLink, person: str, event_id: str, crop: bytes | None) -> None:
    out = Outcome(Mode.IDENTIFY, Decision.ACCEPT, Source.LOCAL, person, score=0.7,
                  liveness=TrackLiveness(0.9, 5, "live"))
    link.decided(out, {"event_id": event_id}, 0.05, face_crop=crop)


@pytest.mark.parametrize("enabled", [False, True], ids=["off", "on"])
def test_the_door_keeps_crops_only_when_the_site_enables_them(tmp_path, jpeg, enabled) -> None:
    s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False}, identify={"groups": ["staff"]},
                     door={"log_face_crops": enabled})
    log = AccessLog(tmp_path / "log.db", KEY)
    seal = CropSeal.from_edge_key(KEY) if s.door.log_face_crops else None
    link = DoorLink.from_settings(s, Recorder(), gallery, access_log=log, crop_seal=seal)
    link.start()
    decide(link, "ben", "d1", jpeg)
    (record,) = [r for r in log.records(0, 100) if r["kind"] == "decision"]
    assert (record["event_id"], record["outcome"]) == ("d1", "grant") and log.verify().ok
    if enabled:
        sealed = log.crops(record["seq"], record["seq"])[record["seq"]]
        assert record["detail"]["face_crop"] == hashlib.sha256(sealed).hexdigest()
        assert CropSeal.from_edge_key(KEY).open("d1", sealed) == jpeg
    else:
        assert log.crops(0, 100) == {} and "face_crop" not in record.get("detail", {})
        assert not EdgeSettings(storage={"path": tmp_path}).door.log_face_crops  # off by default


@pytest.fixture
def hub(tmp_path, models_dir):
    with start_hub(tmp_path / "hub") as hub:
        yield hub


def test_crops_reach_the_hub_sealed_only_where_upload_is_enabled(hub, tmp_path, jpeg) -> None:
    seal = CropSeal.from_edge_key(KEY)

    def filled(name: str) -> tuple[AccessLog, dict[int, bytes]]:
        log, sealed = clocked(tmp_path / name), {}
        for i in range(1, 7):
            crop = seal.seal(f"ev{i}", jpeg) if i % 2 else None
            log.append("decision", person_id="ann", outcome="grant", event_id=f"ev{i}", face_crop=crop)
            if crop:
                sealed[i] = crop
        return log, sealed

    with hub.client(timeout=10.0, retries=0) as client:
        log, _ = filled("off.db")
        assert Uploader(client, log, "e-off", batch=3).run_once()["uploaded"] == 6
        assert hub.store.access_crop(hub.appid, "e-off", 1) is None  # records only
        log, sealed = filled("on.db")
        state = Uploader(client, log, "e-on", batch=4, with_crops=True).run_once()
        assert (state["status"], state["uploaded"]) == ("ok", 6)
        assert {i: hub.store.access_crop(hub.appid, "e-on", i) for i in range(1, 7)} == {
            i: sealed.get(i) for i in range(1, 7)}  # as sealed on the edge: the hub cannot open them
        # sent again (a lost answer): stored once, the same bytes
        crops = canonical([{"seq": 1, "sealed": base64.b64encode(sealed[1]).decode()}])
        assert client.uploadlog("e-on", canonical(log.records(0, 1)), crops=crops)["stored"] == 0


def test_a_crop_that_is_not_its_records_is_refused_and_counted(hub, tmp_path, jpeg) -> None:
    seal = CropSeal.from_edge_key(KEY)
    log = clocked(tmp_path / "log.db")
    log.append("decision", person_id="ann", outcome="grant", event_id="ev1", face_crop=seal.seal("ev1", jpeg))
    log.append("decision", person_id="ben", outcome="grant", event_id="ev2", face_crop=seal.seal("ev2", jpeg))
    records = canonical(log.records())
    own = log.crops(1, 2)

    def crops(*items) -> str:
        return json.dumps([{"seq": seq, "sealed": base64.b64encode(b).decode()} for seq, b in items])

    attempts = [crops((1, own[2])),  # ben's crop sent as ann's
                crops((1, seal.seal("ev1", jpeg))),  # another image for record 1
                crops((3, own[1])),  # a record not in the batch
                crops((1, own[1]), (1, own[1])),  # twice
                '{"not": "a list"}', crops((1, b"x"))[:-5]]
    with hub.client(timeout=10.0, retries=0) as client:
        for attempt in attempts:
            with pytest.raises(CloudApiError) as err:
                client.uploadlog("e1", records, crops=attempt)
            assert err.value.code == LOG_CROP, attempt
        chain = hub.store.access_chain(hub.appid, "e1")
        assert (chain["seq"], chain["refused"]) == (0, len(attempts))  # nothing of it stored
        assert hub.store.access_crop(hub.appid, "e1", 1) is None
        assert client.uploadlog("e1", records, crops=crops((1, own[1]), (2, own[2])))["head"] == 2


def test_both_stores_keep_the_sealed_crops_once(hub_store, tmp_path, jpeg) -> None:
    from edge.core.access_chain import parse_crops

    log = clocked(tmp_path / "log.db")
    sealed = CropSeal.from_edge_key(KEY).seal("ev1", jpeg)
    log.append("decision", person_id="ann", outcome="grant", event_id="ev1", face_crop=sealed)
    log.append("decision", person_id="ann", outcome="grant", event_id="ev2")
    records = log.records()
    crops = parse_crops(json.dumps([{"seq": 1, "sealed": base64.b64encode(sealed).decode()}]), records)
    assert hub_store.store_access_records("app", "e1", records, crops) == (2, 2)
    assert hub_store.store_access_records("app", "e1", records, crops) == (0, 2)  # again: once
    assert hub_store.access_crop("app", "e1", 1) == sealed and hub_store.access_crop("app", "e1", 2) is None
    assert hub_store.access_crop("another-app", "e1", 1) is None


def test_a_version_6_sqlite_store_gets_the_crops_table(tmp_path) -> None:
    """A store of the version before the crops (6: edge reports) gets their table at open."""
    import sqlite3

    from edge.hub.store import SqliteStore

    path = tmp_path / "v6.sqlite3"
    current = older_sqlite_store(path, 6, "access_crops", "claim_lifts")
    store = SqliteStore(path)
    assert store.access_crop("app", "e1", 1) is None  # the table is there again
    store.close()
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == current == 13


def test_face_crops_past_retention_go_even_when_no_hub_holds_their_records(tmp_path, jpeg) -> None:
    """Records are pruned only once the hub holds them, and crops went only with their records:
    an edge without a hub (or whose uploads were refused) kept every face for good, whatever
    log_retention_days said. The door link deletes crops past retention by themselves (hourly);
    the records stay, and the chain, which holds a crop's hash, still verifies."""
    seal = CropSeal.from_edge_key(KEY)
    log = clocked(tmp_path / "no-hub.db", retention_days=1)
    for i in range(1, 4):
        log.append("decision", person_id="ann", outcome="grant", event_id=f"ev{i}", face_crop=seal.seal(f"ev{i}", jpeg))
    assert len(log.crops(0, 100)) == 3 and log.uploaded == 0
    s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False}, door={"log_face_crops": True})
    link = DoorLink.from_settings(s, Recorder(), gallery, access_log=log, crop_seal=seal)
    link.start()
    link.tick()  # now: within a day of the records, kept
    assert len(log.crops(0, 100)) == 3
    log._clock = lambda: T0 + 2 * 600 + 86_400 + 1  # just over a day after the second one
    link._crops_pruned_at = float("-inf")  # the hour has passed
    link.tick()
    assert sorted(log.crops(0, 100)) == [3] and log.verify().ok and log.verify().records >= 3


def test_a_door_without_a_hub_prunes_its_records_past_retention(tmp_path) -> None:
    """Without a hub the records past log_retention_days were to be pruned all the same (docs/
    access.md), but only an upload ever pruned, and a door without a hub has no uploader: its log
    grew on the SD card for good. The door link prunes them hourly when no hub waits for them."""
    log = clocked(tmp_path / "no-hub.db", retention_days=1, waits_for_hub=False)
    for i in range(1, 4):
        log.append("decision", person_id="ann", outcome="grant", event_id=f"ev{i}")
    s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False})
    link = DoorLink.from_settings(s, Recorder(), gallery, access_log=log, clock_synchronised=lambda: True)
    link.start()
    link.tick()
    assert [r["seq"] for r in log.records()][:3] == [1, 2, 3]  # within a day: kept
    log._clock = lambda: T0 + 2 * 600 + 86_400 + 1  # just over a day after the second one
    link._crops_pruned_at = float("-inf")  # the hour has passed
    link.tick()
    assert [r["seq"] for r in log.records()][0] == 3 and log.verify().ok


def test_a_door_without_a_hub_keeps_its_records_while_its_clock_is_not_synchronised(tmp_path, caplog) -> None:
    """Without a hub the door's copy is the only one: a clock set years ahead by hand (or a Pi
    booted on a wrong time) dated every record past retention and the prune deleted the log. It
    prunes only while the kernel says the clock is synchronised ([door] clock_check)."""
    log = clocked(tmp_path / "no-hub.db", retention_days=1, waits_for_hub=False)
    for i in range(1, 4):
        log.append("decision", person_id="ann", outcome="grant", event_id=f"ev{i}")
    synchronised = [False]
    s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False})
    link = DoorLink.from_settings(s, Recorder(), gallery, access_log=log, clock_synchronised=lambda: synchronised[0])
    link.start()
    log._clock = lambda: T0 + 3 * 365 * 86_400  # the clock set three years ahead
    link._crops_pruned_at = float("-inf")
    with caplog.at_level("WARNING", logger="edge.daemon"):
        link.tick()
    assert [r["seq"] for r in log.records()][:3] == [1, 2, 3] and log.verify().ok
    assert "records past log_retention_days are kept: the clock is not synchronised" in caplog.text  # said, hourly
    synchronised[0] = True  # NTP agrees: the time is true, the records are that old
    link._crops_pruned_at = float("-inf")
    link.tick()
    assert all(r["seq"] > 3 for r in log.records()) and log.verify().ok


def test_a_large_prune_goes_in_batches_the_lock_let_go_between_them(tmp_path, monkeypatch) -> None:
    """The first prune after lowering log_retention_days on a year's log deleted it in one
    transaction, the log's lock held: seconds on a Pi, on the main loop without a hub, and a
    decision's record waited behind it with one. It goes PRUNE_BATCH records at a time: one
    batch a tick of the main loop, every batch in a row after an upload (another thread)."""
    monkeypatch.setattr("edge.door.access_log.PRUNE_BATCH", 3)
    log = clocked(tmp_path / "no-hub.db", retention_days=1, waits_for_hub=False)
    for i in range(1, 9):
        log.append("decision", person_id="ann", outcome="grant", event_id=f"ev{i}")
    later = T0 + 8 * 600 + 86_400 + 1
    assert log.prune(now=later, batches=1) == 3 and log.verify().ok
    assert log.prune(now=later) == 5 and log.records() == [] and log.verify().ok

    log = clocked(tmp_path / "no-hub-link.db", retention_days=1, waits_for_hub=False)
    for i in range(1, 9):
        log.append("decision", person_id="ann", outcome="grant", event_id=f"ev{i}")
    s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False})
    link = DoorLink.from_settings(s, Recorder(), gallery, access_log=log, clock_synchronised=lambda: True)
    link.start()
    log._clock = lambda: later
    left = []
    for _ in range(4):
        link.tick()
        left.append(sum(r["seq"] <= 8 for r in log.records()))
    assert left == [5, 2, 0, 0] and log.verify().ok
