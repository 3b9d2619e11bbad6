"""Sync from a real hub into the edge cache: changes, deletions, offline, fingerprint mismatch."""

from __future__ import annotations

import numpy as np
import pytest

from edge.api.client import CloudClient
from edge.daemon.cache import CacheError, EdgeCache
from edge.daemon.sync import Syncer
from tests.conftest import free_port
from tests.support.hub import hub_with_five_enrolled


@pytest.fixture(scope="module")
def hub(tmp_path_factory, faces_dir, models_dir):
    with hub_with_five_enrolled(tmp_path_factory.mktemp("synchub"), faces_dir) as hub:
        client = hub.client(timeout=30.0, retries=0)
        yield hub, client
        client.close()


@pytest.fixture(scope="module")
def pipeline(models_dir):
    from edge.vision import Pipeline

    return Pipeline.load(models_dir)


def _embedding(pipeline, path):
    from edge.vision import load_image

    faces = pipeline.analyze(load_image(path), max_faces=1)
    return faces[0].embedding


def test_a_person_enrolled_on_the_hub_matches_offline_after_sync_and_stops_after_deletion(
        hub, pipeline, faces_dir, tmp_path):
    hub_server, client = hub
    swapped = []
    syncer = Syncer(client, EdgeCache(tmp_path / "c.db"), pipeline.fingerprint, page_size=4,
                    on_gallery=swapped.append)
    assert syncer.sync_once()["status"] == "ok"
    gallery = swapped[-1]
    assert gallery.person_ids == {"ben_afflek", "elton_john", "jerry_seinfield", "madonna", "mindy_kaling"}
    probe = _embedding(pipeline, faces_dir / "five_celebrity/Mindy_Kaling/val_1.jpg")
    assert gallery.identify(probe).candidates[0].person_id == "mindy_kaling"

    client.newperson("temp_person", ["staff"], (faces_dir / "five_celebrity/Madonna/train_1.jpg").read_bytes())
    client.delperson("mindy_kaling")
    state = syncer.sync_once()
    assert state["status"] == "ok" and state["changes"] > 0
    gallery = swapped[-1]
    assert "mindy_kaling" not in gallery.person_ids and "temp_person" in gallery.person_ids
    assert gallery.verify(probe, "mindy_kaling") is None
    # Put the hub back as the other tests expect it.
    client.delperson("temp_person")
    for photo in sorted((faces_dir / "five_celebrity/Mindy_Kaling").glob("train_*.jpg")):
        try:
            client.newperson("mindy_kaling", ["staff"], photo.read_bytes(), person_name="Mindy_Kaling")
            break
        except Exception:  # no usable face in this one: the next
            continue


def test_the_cache_keeps_the_last_synced_gallery_when_the_hub_is_unreachable(hub, pipeline, tmp_path):
    _, client = hub
    Syncer(client, EdgeCache(tmp_path / "c.db"), pipeline.fingerprint).sync_once()
    dead = CloudClient(f"http://127.0.0.1:{free_port()}", "x", "y", "z", timeout=1, retries=0)
    syncer = Syncer(dead, EdgeCache(tmp_path / "c.db"), pipeline.fingerprint)
    state = syncer.sync_once()
    assert state["status"] == "offline" and "unreachable" in state["last_error"]
    assert len(syncer.load().person_ids) == 5  # a restart offline still matches everyone


def test_a_fingerprint_the_hub_does_not_store_is_reported_naming_both(hub, tmp_path):
    _, client = hub
    syncer = Syncer(client, EdgeCache(tmp_path / "c.db"), "0000deadbeef0000")
    state = syncer.sync_once()
    assert state["status"] == "fingerprint_mismatch"
    assert "0000deadbeef0000" in state["last_error"]


def test_a_new_embedder_fingerprint_empties_the_cache_and_starts_from_zero(hub, pipeline, tmp_path):
    _, client = hub
    cache = EdgeCache(tmp_path / "c.db")
    Syncer(client, cache, pipeline.fingerprint).sync_once()
    assert cache.counts()["faces"] > 0 and cache.cursor > 0
    Syncer(client, cache, "another-pack")
    assert cache.counts() == {"persons": 0, "faces": 0} and cache.cursor == 0


def test_a_malformed_page_is_rolled_back_whole(tmp_path):
    cache = EdgeCache(tmp_path / "c.db")
    good = {"seq": 1, "type": "person", "person_id": "p", "deleted": False, "person_name": "P",
            "tag": "", "group_ids": ["g"]}
    bad = {"seq": 2, "type": "face", "face_id": "f", "person_id": "p", "deleted": False,
           "embedding": "not base64!"}
    with pytest.raises(CacheError):
        cache.apply_page([good, bad], 2)
    assert cache.counts() == {"persons": 0, "faces": 0} and cache.cursor == 0
    import base64

    ok = dict(bad, embedding=base64.b64encode(np.ones(4, "<f4").tobytes()).decode())
    cache.apply_page([good, ok], 2)
    assert cache.counts() == {"persons": 1, "faces": 1} and cache.cursor == 2


class _BrokenHub:
    """A real HTTP server on loopback that answers /face/sync the way a buggy hub might:
    `pages(since)` returns the page for a cursor. Counts the requests it got."""

    def __init__(self, pages):
        import json
        from contextlib import ExitStack

        from tests.support.loopback import QuietHandler, serving

        hub = self
        self.requests = 0

        class Handler(QuietHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                hub.requests += 1
                out = json.dumps({"code": 0, "message": "OK", "data": pages(int(body["since"]))}).encode()
                self.reply(200, out, {"Content-Type": "application/json"})

        self._serving = ExitStack()
        self.server = self._serving.enter_context(serving(Handler))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self):
        self._serving.close()


def _face(seq, values):
    import base64

    vector = np.ones(values, "<f4") / np.sqrt(values)
    return {"seq": seq, "type": "face", "face_id": f"f{seq}", "person_id": "p1", "deleted": False,
            "embedding": base64.b64encode(vector.tobytes()).decode(), "quality": 0.9}


def _person(seq):
    return {"seq": seq, "type": "person", "person_id": f"p{seq}", "deleted": False,
            "person_name": "", "tag": "", "group_ids": ["g"]}


def _sync_in_thread(syncer):
    """sync_once in a thread: a syncer that loops for ever fails the test instead of hanging it."""
    import threading

    result = {}
    t = threading.Thread(target=lambda: result.update(syncer.sync_once()), daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "sync_once never returned"
    return result


def test_a_hub_repeating_has_more_with_the_same_cursor_ends_the_sync_with_an_error(tmp_path):
    hub = _BrokenHub(lambda since: {"cursor": 7, "has_more": True, "changes": [_person(7)]})
    try:
        client = CloudClient(hub.url, "a", "b", "c", timeout=5, retries=0)
        syncer = Syncer(client, EdgeCache(tmp_path / "c.db"), "fp")
        state = _sync_in_thread(syncer)
        assert state["status"] == "error" and "does not advance" in state["last_error"]
        assert state["cursor"] == 7  # the first page was good and is kept
        assert hub.requests == 2
        client.close()
    finally:
        hub.close()


@pytest.mark.parametrize("bad", [
    {"cursor": 3, "has_more": False, "changes": [dict(_person(3), person_name=["not", "text"])]},
    {"cursor": 3, "has_more": False, "changes": [dict(_person(3), group_ids="staff")]},
    {"cursor": float("inf"), "has_more": False, "changes": []},
    {"cursor": 4, "has_more": False, "changes": [_person(9), dict(_face(4, 1), person_id="p9")]},  # 1 value, not 4
])
def test_a_bad_page_after_a_good_one_leaves_the_good_ones_in_the_gallery(tmp_path, bad):
    """Page 1 deletes p1; page 2 is bad in a way the cache's checks did not catch (a name that is
    no text failed the database write, an infinite cursor int(), a face of another length emptied
    the whole gallery): the sync ended on an exception it did not expect, the gallery in use was
    never reloaded, and p1 kept matching at the door while the hub saw the deletion applied."""
    pages = {0: {"cursor": 2, "has_more": False, "changes": [_person(1), _face(2, 4), _person(5),
                                                             dict(_face(6, 4), person_id="p5")]}}
    hub = _BrokenHub(lambda since: pages.get(since, {"cursor": since, "has_more": False, "changes": []}))
    try:
        client = CloudClient(hub.url, "a", "b", "c", timeout=5, retries=0)
        loaded = []
        syncer = Syncer(client, EdgeCache(tmp_path / "c.db"), "fp", on_gallery=loaded.append)
        assert _sync_in_thread(syncer)["status"] == "ok" and loaded[-1].person_ids == {"p1", "p5"}
        # the next round: p1 deleted (and another member enrolled), then the bad page
        pages.update({2: {"cursor": 3, "has_more": True, "changes": [dict(_person(1), deleted=True)]}, 3: bad})
        state = _sync_in_thread(syncer)
        assert state["status"] == "error" and "bad sync page" in state["last_error"], state
        assert syncer.cache.cursor == 3
        assert loaded[-1].person_ids == {"p5"}  # the deletion is in the gallery the door matches with
        client.close()
    finally:
        hub.close()


def test_an_endless_backlog_is_pulled_in_bounded_rounds_and_bad_changes_do_not_raise(tmp_path):
    hub = _BrokenHub(lambda since: {"cursor": since + 1, "has_more": True, "changes": [_person(since + 1)]})
    try:
        client = CloudClient(hub.url, "a", "b", "c", timeout=5, retries=0)
        syncer = Syncer(client, EdgeCache(tmp_path / "c.db"), "fp", max_pages=5)
        state = _sync_in_thread(syncer)
        assert state["status"] == "syncing" and state["pages_last"] == 5 and state["cursor"] == 5
        assert syncer._trigger.is_set()  # the rest follows in the next round, lock released
        client.close()
    finally:
        hub.close()
    junk = _BrokenHub(lambda since: {"cursor": 9, "has_more": False, "changes": ["not an object"]})
    try:
        client = CloudClient(junk.url, "a", "b", "c", timeout=5, retries=0)
        state = Syncer(client, EdgeCache(tmp_path / "c.db"), "fp").sync_once()
        assert state["status"] == "error" and "not an object" in state["last_error"]
        assert state["cursor"] == 5  # the bad page changed nothing
        client.close()
    finally:
        junk.close()


def test_a_reporting_edge_tells_the_hub_the_cursor_it_has_applied_and_what_it_runs(hub, pipeline, tmp_path):
    from edge.core.syncwire import report_fields

    server, client = hub
    sent = []

    def report() -> dict:
        sent.append(1)
        return {"edge_id": "edge-report", **report_fields(pipeline.fingerprint, "require", "locked, mode normal",
                                                          "ok")}

    syncer = Syncer(client, EdgeCache(tmp_path / "c.db"), pipeline.fingerprint, page_size=4, report=report)
    assert syncer.sync_once()["status"] == "ok"
    (mine,) = [r for r in server.store.edge_reports(server.appid) if r.edge_id == "edge-report"]
    # the pages of the backlog, then one more: the hub knows the cursor applied, not the one before
    assert mine.cursor == syncer.cache.cursor == server.store.last_seq(server.appid) and len(sent) == 1
    assert (mine.pack, mine.liveness, mine.door, mine.health) == (pipeline.fingerprint, "require",
                                                                  "locked, mode normal", "ok")
    # a report that cannot be built never stops the sync
    broken = Syncer(client, EdgeCache(tmp_path / "d.db"), pipeline.fingerprint, report=lambda: 1 / 0)
    assert broken.sync_once()["status"] == "ok" and broken.cache.cursor > 0


def test_a_door_behind_many_rows_of_other_groups_still_gets_its_own_in_one_sync(hub, pipeline, faces_dir, tmp_path):
    """A sync for some groups leaves other groups' rows out (a door's key learns no one else's
    id), so a page could come back empty with more after it: the edge stopped there, and a
    member enrolled after a batch of another group's reached the door only syncs later. The hub
    reads on until its page is full (within a bound), and the edge goes on past an empty page."""
    from edge.hub.store import FaceRecord, Limits

    server, client = hub
    store, fingerprint = server.store, pipeline.fingerprint
    vec = _embedding(pipeline, faces_dir / "five_celebrity/Madonna/train_1.jpg")

    def enrol(pid: str, group: str) -> None:
        record = FaceRecord(store.new_face_id(), pid, (1, 2, 90, 90), [[1.0, 2.0]] * 5, quality=0.9,
                            embeddings={fingerprint: vec})
        store.create_person(server.appid, pid, [group], "", "", record, Limits())

    syncer = Syncer(client, EdgeCache(tmp_path / "door.db"), fingerprint, group_ids=["staff"], page_size=2,
                    report=lambda: {"edge_id": "door-behind"})
    assert syncer.sync_once()["status"] == "ok"
    cursor = syncer.cache.cursor
    board = [f"board_{i}" for i in range(30)]
    try:
        for pid in board:
            enrol(pid, "board")
        enrol("late_member", "staff")
        # two rows a person: a page of 2 reads at most 40 rows, all the board's; the next one hers
        page = store.sync_page(server.appid, cursor, fingerprint, ["staff"], 2)
        assert page.changes == [] and page.has_more and page.cursor == cursor + 40
        page = store.sync_page(server.appid, page.cursor, fingerprint, ["staff"], 2)
        assert [c.person_id for c in page.changes] == ["late_member"] * 2 and not page.has_more
        state = syncer.sync_once()
        assert state["status"] == "ok" and syncer.cache.cursor == store.last_seq(server.appid)
        held = syncer.cache.gallery(syncer.thresholds).person_ids
        assert "late_member" in held and not any(pid.startswith("board_") for pid in held)
    finally:
        for pid in [*board, "late_member"]:
            try:
                store.delete_person(server.appid, pid)
            except Exception:
                pass  # not made: the test failed before


def test_a_hub_restored_from_a_backup_is_noticed_and_its_deletions_reach_the_door(pipeline, faces_dir, tmp_path):
    """The hub restored from last night's backup (or reinstalled at the same url) numbers its
    next changes from where the backup ended: an edge past that took them as seen. A person
    deleted after the restore kept passing at the door, and one enrolled never arrived, with
    sync `ok`. Each page now says the hub's newest change; an edge past it syncs anew from 0."""
    import shutil
    import sqlite3

    from tests.support.hub import start_hub

    celebrity = faces_dir / "five_celebrity"
    photo = {p: (celebrity / p / "train_1.jpg").read_bytes() for p in ("Madonna", "Ben_Afflek", "Elton_John")}
    cache = EdgeCache(tmp_path / "edge.db")
    with start_hub(tmp_path / "hub") as hub, hub.client(timeout=30.0, retries=0) as client:
        client.newperson("alice", ["staff"], photo["Madonna"])
        with sqlite3.connect(hub.store_path) as live, sqlite3.connect(tmp_path / "backup.sqlite3") as backup:
            live.backup(backup)  # last night's backup
        client.newperson("bob", ["staff"], photo["Ben_Afflek"])
        client.newperson("carol", ["staff"], photo["Elton_John"])
        syncer = Syncer(client, cache, pipeline.fingerprint, group_ids=["staff"])
        assert syncer.sync_once()["status"] == "ok"
        assert syncer.load().person_ids == {"alice", "bob", "carol"}
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "hub" / f"hub.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.sqlite3", tmp_path / "hub" / "hub.sqlite3")  # the hub restored
    with start_hub(tmp_path / "hub") as hub, hub.client(timeout=30.0, retries=0) as client:
        client.delperson("alice")  # revoked after the restore
        client.newperson("dave", ["staff"], photo["Ben_Afflek"])
        syncer.client = client
        state = syncer.sync_once()
        assert state["status"] == "ok" and state["resyncs"] == 1
        assert syncer.load().person_ids == {"dave"}  # what the hub holds now, alice gone
        assert syncer.sync_once()["resyncs"] == 1  # once: it is caught up now


@pytest.mark.parametrize("status, health", [("ok", "ok"), ("offline", "ok"), ("error", "degraded"),
                                            ("fingerprint_mismatch", "degraded")])
def test_a_sync_that_cannot_apply_the_hubs_changes_makes_the_edge_degraded(status, health):
    """A change this edge cannot read (a card format of a newer hub) rolls its page back on
    every sync, and the deletions behind it never arrive: the door decided on ever older data
    while /health said ok. An offline hub is not that (the door keeps its last synced state)."""
    from edge.core.matcher import Gallery, Thresholds
    from edge.daemon.health import DaemonSnapshot, daemon_state

    snap = DaemonSnapshot(
        device="door", uptime_s=1.0, camera={"status": "ok", "frames": 0, "bad_frames": 0, "failures": 0,
                                             "last_error": ""},
        sync={"status": status, "last_error": "bad sync page" if status == "error" else ""}, threads={},
        stopping=False, outbox_sender=True, mqtt_loop=None, mqtt_connected=True, outbox_depth=0, outbox_rejected=0,
        outbox={"writable": True, "held_in_memory": 0, "dropped": 0},
        gallery=Gallery((), Thresholds(0.5, 0.3), version="empty"), identify_groups=[], breaker="disabled",
        decisions=0, pending=0, precision="int8", fingerprint="0" * 16, thresholds=Thresholds(0.5, 0.3),
        identify_rate_per="approach", identify_first_share=0.5, verify_rate_per="claim", liveness={},
        claims={"max_refusals": 5, "locked_out": 0})
    assert daemon_state(snap)["status"] == health


def test_an_empty_cache_refuses_faces_of_another_length_than_the_devices_embedder(tmp_path):
    """The length check compared a face with the faces already cached: an empty cache took 64
    values from the hub, and every decision then raised on them (a traceback per frame, the door
    shut, /health ok). The cache knows the length its device's embedder gives."""
    cache = EdgeCache(tmp_path / "c.db", dim=128)
    with pytest.raises(CacheError, match="64 values where this device's embedder gives 128"):
        cache.apply_page([_person(1), _face(2, 32)], 2)  # (_face's values are float64: 32 of them, 64 float32)
    assert cache.cursor == 0
    assert cache.apply_page([_person(1), _face(2, 64)], 2) == 2


def test_a_disk_running_full_makes_the_edge_degraded_before_writes_fail(tmp_path, monkeypatch):
    """Nothing in /health or the state said how full the data directory's disk was: a card
    filling over months was seen only once writes failed (the access log losing records, every
    signed claim and unlock refused, signatures.db unable to record them)."""
    import dataclasses

    from edge.core.matcher import Gallery, Thresholds
    from edge.daemon import health as health_module
    from edge.daemon.health import DaemonSnapshot, daemon_state, storage_health

    (tmp_path / "access-log.db").write_bytes(b"x" * 1000)
    roomy = storage_health(tmp_path)
    assert roomy["status"] == "ok" and roomy["free_bytes"] > 0 and roomy["largest"][0] == ("access-log.db", 1000)
    snap = DaemonSnapshot(
        device="door", uptime_s=1.0, camera={"status": "ok", "frames": 0, "bad_frames": 0, "failures": 0,
                                             "last_error": ""},
        sync={"status": "ok", "last_error": ""}, threads={}, stopping=False, outbox_sender=True, mqtt_loop=None,
        mqtt_connected=True, outbox_depth=0, outbox_rejected=0,
        outbox={"writable": True, "held_in_memory": 0, "dropped": 0},
        gallery=Gallery((), Thresholds(0.5, 0.3), version="empty"), identify_groups=[], breaker="disabled",
        decisions=0, pending=0, precision="int8", fingerprint="0" * 16, thresholds=Thresholds(0.5, 0.3),
        identify_rate_per="approach", identify_first_share=0.5, verify_rate_per="claim", liveness={},
        storage=roomy)
    assert daemon_state(snap)["status"] == "ok" and daemon_state(snap)["storage"]["free_bytes"] > 0
    monkeypatch.setattr(health_module, "LOW_DISK_BYTES", roomy["free_bytes"] * 2)  # as if nearly full
    low = storage_health(tmp_path)
    assert low["status"] == "low"
    assert daemon_state(dataclasses.replace(snap, storage=low))["status"] == "degraded"


def test_an_idle_sync_writes_nothing(tmp_path):
    """Every sync rewrote the cursor and its mark in a transaction of its own, changes or not:
    an fsync of the SD card a minute (1,440 a day) for nothing. A page that changes nothing the
    cache holds commits nothing."""
    cache = EdgeCache(tmp_path / "cache.db")
    cache.apply_page([], cursor=7, hub_rules=2, cursor_mark="m7")
    before = cache._db.total_changes
    for _ in range(3):
        assert cache.apply_page([], cursor=7, hub_rules=2, cursor_mark="m7") == 0
    assert cache._db.total_changes == before
    cache.apply_page([], cursor=8, hub_rules=2, cursor_mark="m8")  # the hub moved on: written
    assert cache.cursor == 8 and cache._db.total_changes > before


def test_a_door_on_a_pack_the_hub_no_longer_serves_still_drops_the_deleted(tmp_path, faces_dir, models_dir):
    """A door whose pack the hub stopped serving (not yet restarted onto the new one, or offline
    through the change) got code 21 and no page: persons deleted meanwhile kept passing there
    until it moved. The answer names the persons gone since its cursor; the door drops them (its
    cursor stays: the new pack resyncs from 0). A real hub, restarted on the same store without
    the door's pack."""
    from edge.daemon.sync import Syncer
    from tests.support.hub import hub_with_five_enrolled, start_hub

    with hub_with_five_enrolled(tmp_path / "hub", faces_dir, vision={"also_embed": ["fp32"]}) as hub:
        old_pack = next(f for f in hub.app.state.service.vision.fingerprints
                        if f != hub.app.state.service.vision.primary.fingerprint)
        with hub.client(timeout=30, retries=0) as client:
            door = Syncer(client, EdgeCache(tmp_path / "door.db"), old_pack, group_ids=["staff"])
            assert door.sync_once()["status"] == "ok" and "madonna" in door.load().person_ids
    with start_hub(tmp_path / "hub") as hub:  # the old pack no longer served
        with hub.client(timeout=30, retries=0) as client:
            client.delperson("madonna")
            door = Syncer(client, EdgeCache(tmp_path / "door.db"), old_pack, group_ids=["staff"])
            cursor = door.cache.cursor
            assert door.sync_once()["status"] == "fingerprint_mismatch"
            persons = door.load().person_ids
    assert "madonna" not in persons and "ben_afflek" in persons and door.cache.cursor == cursor


def test_a_door_on_an_old_pack_drops_a_person_enrolled_again_and_pages_through_a_long_list(
        tmp_path, faces_dir, models_dir, photos, monkeypatch):
    """Only the persons gone were named: Ben deleted and enrolled again under his id with another
    person's photo kept his old faces at a door on a pack the hub no longer serves. Any change
    drops the person there; and a list longer than its cap came back the same (the first ones by
    id) at every sync, the rest never dropped: the door asks for the ones after its last."""
    from edge.core import syncwire
    from edge.daemon.sync import Syncer
    from tests.support.hub import hub_with_five_enrolled, start_hub

    with hub_with_five_enrolled(tmp_path / "hub", faces_dir, vision={"also_embed": ["fp32"]}) as hub:
        old_pack = next(f for f in hub.app.state.service.vision.fingerprints
                        if f != hub.app.state.service.vision.primary.fingerprint)
        with hub.client(timeout=30, retries=0) as client:
            door = Syncer(client, EdgeCache(tmp_path / "door.db"), old_pack, group_ids=["staff"])
            assert door.sync_once()["status"] == "ok"
            assert {"ben_afflek", "madonna", "elton_john"} <= set(door.load().person_ids)
    monkeypatch.setattr(syncwire, "MAX_VANISHED", 1)  # the hub (in this process) and the door alike
    with start_hub(tmp_path / "hub") as hub, hub.client(timeout=30, retries=0) as client:
        client.delperson("ben_afflek")
        client.newperson("ben_afflek", ["staff"], photos("Madonna", "train_3"))  # the same id, another face
        client.delperson("madonna")
        door = Syncer(client, EdgeCache(tmp_path / "door.db"), old_pack, group_ids=["staff"])
        assert door.sync_once()["status"] == "fingerprint_mismatch"
        assert "ben_afflek" not in door.load().person_ids and "madonna" in door.load().person_ids
        door.sync_once()  # the next part of the list
        persons = door.load().person_ids
    assert "madonna" not in persons and "elton_john" in persons


def test_a_door_takes_back_the_persons_it_dropped_once_its_pack_is_served_again(tmp_path, faces_dir, models_dir):
    """A door saw its hub once without its pack (`also_embed` taken out while it had not moved,
    or one process of a cluster restarted first) and dropped the persons changed since its
    cursor: a card added to Madonna, one of Ben's two faces removed. With the pack served again,
    their remaining faces, from before its cursor, never came back: they were refused there
    until the cache was reset. The door syncs again from 0 (what it holds stays meanwhile)."""
    from edge.daemon.sync import Syncer
    from tests.support.hub import hub_with_five_enrolled, start_hub

    def faces_of(door) -> dict[str, int]:
        return dict(door.cache._db.execute("SELECT person_id, count(*) FROM faces GROUP BY person_id").fetchall())

    with hub_with_five_enrolled(tmp_path / "hub", faces_dir, vision={"also_embed": ["fp32"]}) as hub:
        pack = hub.app.state.service.vision.primary.fingerprint
        with hub.client(timeout=30, retries=0) as client:
            door = Syncer(client, EdgeCache(tmp_path / "door.db"), pack, group_ids=["staff"])
            assert door.sync_once()["status"] == "ok"
    with start_hub(tmp_path / "hub", vision={"precision": "fp32"}) as hub, hub.client(timeout=30, retries=0) as client:
        client.setcredentials("madonna", [{"format": "h10301", "facility": 42, "number": 12345}])
        client.delface("ben_afflek", client.getfaceids("ben_afflek")["face_ids"][:1])
        door.client = client
        assert door.sync_once()["status"] == "fingerprint_mismatch"
        assert "madonna" not in door.load().person_ids and "ben_afflek" not in door.load().person_ids
    with start_hub(tmp_path / "hub", vision={"precision": "fp32", "also_embed": ["int8"]}) as hub, \
            hub.client(timeout=30, retries=0) as client:
        on_hub = {p: len(client.getfaceids(p)["face_ids"]) for p in client.getpersonids("staff")["person_ids"]}
        door.client = client
        assert door.sync_once()["status"] == "ok"
        assert faces_of(door) == on_hub and door.cache.credentials_of("madonna")
