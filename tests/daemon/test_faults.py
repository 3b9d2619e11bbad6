"""Faults the door must survive: broker outage, hub outage, SIGKILL during sync, dead camera."""

from __future__ import annotations

import shutil
import signal
import sqlite3
from contextlib import ExitStack

from edge.daemon.cache import EdgeCache
from tests.conftest import free_port, wait_until
from tests.support.broker import DaemonProc, enrol_five, write_edge_config
from tests.support.hub import hub_with_five_enrolled, start_hub

SCENES = ["nonface/skimage_coffee.png", "nonface/opencv_course_cat.jpg"]


def test_every_decision_arrives_exactly_once_across_a_broker_restart(
        mosquitto, subscribe, faces_dir, models_dir, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    people = sorted(p for p in (faces_dir / "five_celebrity").iterdir() if p.is_dir())
    for i, person in enumerate(people):
        shutil.copy(person / "val_1.jpg", frames / f"{i:02d}a.jpg")
        shutil.copy(faces_dir / SCENES[i % 2], frames / f"{i:02d}b{(faces_dir / SCENES[i % 2]).suffix}")
    sub = subscribe("test/door-f1/event", client_id="door-controller")  # persistent session
    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-f1", camera=f"files:{frames}/*",
                            broker=mosquitto, storage=tmp_path / "data", api_port=port, rate=2)
    daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
    try:
        assert sub.wait_for(lambda: len(sub.json()) >= 1, 60)
        mosquitto.stop()
        held = daemon.wait_health(lambda h: not h["mqtt"]["connected"] and h["mqtt"]["outbox_depth"] > 0, 30)
        assert held["mqtt"]["outbox_depth"] >= 1  # decided during the outage, kept on disk
        mosquitto.start()
        health = daemon.wait_health(lambda h: h["camera"]["status"] == "ended" and h["pending"] == 0
                                    and h["mqtt"]["connected"] and h["mqtt"]["outbox_depth"] == 0, 60)
        assert sub.wait_for(lambda: len({e["event_id"] for e in sub.json()}) >= health["decisions"], 20)
        ids = [e["event_id"] for e in sub.json()]
        assert len(set(ids)) == health["decisions"] == len(people)  # none lost; duplicates only by id
    finally:
        assert daemon.terminate() == 0


def test_decisions_continue_under_the_offline_policy_when_the_hub_is_down(
        mosquitto, subscribe, faces_dir, models_dir, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    sub = subscribe("test/door-f2/event")
    port = free_port()
    with ExitStack() as hub_ctx:
        hub = hub_ctx.enter_context(hub_with_five_enrolled(tmp_path / "hub", faces_dir))
        # Thresholds that make every match uncertain: each decision needs the cloud (asked about
        # an uncertain identify only when configured so: it is off by default).
        cfg = write_edge_config(tmp_path / "edge.toml", device="door-f2", camera=f"files:{drop}/*",
                                broker=mosquitto, hub=hub, storage=tmp_path / "data", api_port=port,
                                loop=True, sections={"policy": {"accept": 0.99, "reject": -1.0, "offline": "deny"},
                                                     "identify": {"cloud_fallback": True}})
        daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
        daemon.wait_health(lambda h: h["sync"].get("status") == "ok" and h["cache"]["persons"] == 5, 60)
        shutil.copy(faces_dir / "five_celebrity/Madonna/val_1.jpg", drop / "a.jpg")
        assert sub.wait_for(lambda: len(sub.json()) >= 1, 30)
        (drop / "a.jpg").unlink()
    # The hub is gone now; the edge still decides, from its cache, under the offline policy.
    try:
        shutil.copy(faces_dir / "five_celebrity/Elton_John/val_1.jpg", drop / "b.jpg")
        assert sub.wait_for(lambda: len(sub.json()) >= 2, 30)
        online, offline = sub.json()[:2]
        assert online["source"] == "cloud" and online["decision"] == "accept"
        assert online["person_id"] == "madonna" and online["cloud"]["ismatch"] is True
        assert offline["source"] == "offline-policy" and offline["decision"] == "unknown"
        assert offline["person_id"] == "elton_john"  # the best local candidate, not let in
        assert offline["cloud"]["error"]
        assert daemon.proc.poll() is None
    finally:
        assert daemon.terminate() == 0


def test_sigkill_during_sync_leaves_a_consistent_store_and_sync_resumes(faces_dir, models_dir, tmp_path):
    from edge.vision import Pipeline

    fingerprint = Pipeline.load(models_dir).fingerprint
    with start_hub(tmp_path / "hub") as hub:
        client = hub.client(timeout=30.0, retries=0)
        enrol_five(client, faces_dir)
        for i in range(400):  # many small changes: a sync of one change per page takes a while
            client.setinfo("madonna", person_name=f"Madonna {i}")
        final = client.sync(0, fingerprint, limit=1000)["cursor"]
        port = free_port()
        cfg = write_edge_config(tmp_path / "edge.toml", device="door-f3", camera=f"files:{tmp_path}/none/*",
                                broker=None, hub=hub, storage=tmp_path / "data", api_port=port,
                                sections={"hub": {"sync_page": 1}})
        db = tmp_path / "data" / "cache.db"

        def cursor() -> int:
            try:
                with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
                    row = conn.execute("SELECT value FROM meta WHERE key='cursor'").fetchone()
                    return int(row[0]) if row else 0
            except sqlite3.Error:
                return 0

        daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
        try:
            assert wait_until(lambda: cursor() > 20, 60, every=0.005)
            daemon.proc.send_signal(signal.SIGKILL)
            daemon.proc.wait()
        finally:
            daemon.kill()  # also when the wait fails: never leave a daemon behind
        # Consistent: exactly the state of the pages up to the stored cursor, nothing half-applied.
        # (A read-write open: it runs SQLite's WAL recovery after the crash, as the daemon will.)
        cache = EdgeCache(db)
        killed_at = cache.cursor
        assert 0 < killed_at < final, "the kill did not land during the sync"
        assert cache.check_consistent() == []
        replay = EdgeCache(tmp_path / "replay.db")
        since = 0
        while since < killed_at:
            page = client.sync(since, fingerprint, limit=1)
            replay.apply_page(page["changes"], page["cursor"])
            since = page["cursor"]
        assert since == killed_at

        def rows(c):
            return (sorted(c._db.execute("SELECT * FROM persons")), sorted(c._db.execute("SELECT * FROM faces")))

        assert rows(cache) == rows(replay)
        cache.close()
        replay.close()

        # Resumes: the restarted daemon continues from the cursor to the hub's state.
        daemon = DaemonProc(cfg, port, tmp_path / "daemon2.log").start()
        try:
            h = daemon.wait_health(lambda h: h["sync"].get("status") == "ok", 60)
            assert h["sync"]["cursor"] == final and h["cache"]["persons"] == 5
            assert h["sync"]["changes"] == final - killed_at  # only what was missing was pulled
            five = ("ben_afflek", "elton_john", "jerry_seinfield", "madonna", "mindy_kaling")
            assert h["cache"]["faces"] == sum(len(client.getfaceids(p)["face_ids"]) for p in five)
        finally:
            assert daemon.terminate() == 0
        client.close()


def test_a_dead_camera_is_retried_and_reported_while_the_daemon_keeps_serving(models_dir, tmp_path):
    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-f4", camera="opencv:/nonexistent/cam.mp4",
                            broker=None, storage=tmp_path / "data", api_port=port)
    daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
    try:
        h = daemon.wait_health(lambda h: h["camera"]["failures"] >= 3, 30)
        assert h["camera"]["status"] == "retrying" and "cannot open" in h["camera"]["last_error"]
        assert h["status"] == "degraded"
    finally:
        assert daemon.terminate() == 0  # SIGTERM: clean exit even with the camera down
