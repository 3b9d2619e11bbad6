"""End to end: real hub, real models, real photos, real mosquitto, the daemon as a process.

The camera (`files:`) plays held-out photos of the five enrolled people, one LFW stranger,
scenes without faces and two unreadable files; a subscriber collects what a door controller
would see on MQTT.
"""

from __future__ import annotations

import json
import shutil

import pytest

from tests.support.broker import Subscriber, daemon_over_frames, edge_client, enrol_five

STRANGER = "lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
SCENES = ["nonface/skimage_coffee.png", "nonface/opencv_course_cat.jpg", "nonface/opencv_course_park.jpg"]
EVENT_FIELDS = {"event_id", "timestamp", "device", "camera", "mode", "decision", "person_id",
                "person_name", "score", "confidence", "source", "cloud", "face", "latency_ms",
                "fingerprints", "cache_version"}


@pytest.fixture(scope="module")
def run(tmp_path_factory, faces_dir, models_dir):
    """One daemon run over the whole slideshow; yields what the tests inspect."""
    tmp = tmp_path_factory.mktemp("e2e")
    frames = tmp / "frames"
    frames.mkdir()
    people = sorted(p for p in (faces_dir / "five_celebrity").iterdir() if p.is_dir())
    n = 0
    for i, person in enumerate(people):
        shutil.copy(person / "val_1.jpg", frames / f"{n:02d}_{person.name.lower()}.jpg")
        n += 1
        if i < len(SCENES):  # a scene between people: also ends the previous track
            shutil.copy(faces_dir / SCENES[i], frames / f"{n:02d}_scene{i}{(faces_dir / SCENES[i]).suffix}")
            n += 1
    shutil.copy(faces_dir / STRANGER, frames / f"{n:02d}_stranger.jpg")
    (frames / f"{n + 1:02d}_garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    (frames / f"{n + 2:02d}_noise.png").write_bytes(bytes(range(256)) * 4)

    enrolled: dict[str, str] = {}
    with daemon_over_frames(tmp, frames, device="door-e2e", enrol=lambda c: enrolled.update(enrol_five(c, faces_dir)),
                            sections={"identify": {"groups": ["staff"]}}) as ran:
        yield {"events": ran.events, "health": ran.health, "daemon": ran.daemon, "hub": ran.hub,
               "enrolled": enrolled, "sub": ran.sub, "broker": ran.broker, "faces": faces_dir}
        assert ran.daemon.terminate() == 0
        assert ran.sub.wait_for(lambda: ran.sub.messages[-1][1] == b"offline" or any(
            t.endswith("/availability") and p == b"offline" for t, p, _ in ran.sub.messages), 10)


def test_each_enrolled_person_is_accepted_with_the_right_person_id(run):
    accepted = {e["person_id"] for e in run["events"] if e["decision"] == "accept"}
    assert accepted == set(run["enrolled"])
    for e in run["events"]:
        if e["decision"] == "accept":
            assert e["person_name"] == run["enrolled"][e["person_id"]]
            assert e["mode"] == "identify" and e["source"] in ("local", "cloud")


def test_the_stranger_is_not_accepted(run):
    # One decision per face photo: five people and the stranger, nothing for the scenes.
    assert len(run["events"]) == len(run["enrolled"]) + 1
    strangers = [e for e in run["events"] if e["decision"] != "accept"]
    assert len(strangers) == 1
    assert strangers[0]["decision"] in ("unknown", "reject")


def test_scenes_and_unreadable_frames_give_no_event_and_do_not_stop_the_daemon(run):
    assert all(e["face"] and e["face"]["box"] for e in run["events"])
    health = run["daemon"].health()
    assert run["daemon"].proc.poll() is None
    assert health["camera"]["bad_frames"] == 2
    assert health["camera"]["frames"] == len(run["enrolled"]) + 1 + len(SCENES)


def test_events_carry_the_documented_fields_and_unique_ids(run):
    events = run["events"]
    for e in events:
        assert EVENT_FIELDS <= set(e), EVENT_FIELDS - set(e)
        assert e["device"] == "door-e2e" and e["timestamp"].endswith("+00:00")
        assert "face_image" not in e  # no biometric data unless configured
        assert {"detect_ms", "embed_ms", "frame_to_event_ms"} <= set(e["latency_ms"])
        assert e["cache_version"].startswith("sync-") and e["cache_version"] != "sync-0"
    assert len({e["event_id"] for e in events}) == len(events)


def test_availability_and_state_are_retained(run):
    late = Subscriber(run["broker"], "test/door-e2e/+")
    try:
        assert late.wait_for(
            lambda: {t.rsplit("/", 1)[1] for t, _, r in late.messages if r} >= {"availability", "state"}, 15)
        retained = {t.rsplit("/", 1)[1]: p for t, p, r in late.messages if r}
        assert retained["availability"] == b"online"
        state = json.loads(retained["state"])
        assert state["cache"]["persons"] == len(run["enrolled"]) and state["sync"]["status"] == "ok"
    finally:
        late.close()


def test_local_api_verifies_a_posted_photo_from_the_synced_cache(run):
    edge = edge_client(run["daemon"].api_port, timeout=30, retries=0)  # the edge's own key, not the hub's
    try:
        photo = (run["faces"] / "five_celebrity/Ben_Afflek/val_2.jpg").read_bytes()
        same = edge.verify("ben_afflek", photo)
        other = edge.verify("madonna", photo)
        found = edge.identify(photo, ["staff"])
    finally:
        edge.close()
    assert same["ismatch"] is True and same["confidence"] >= 70
    assert other["ismatch"] is False
    assert found["candidates"][0]["person_id"] == "ben_afflek"


def test_local_api_compares_and_answers_documented_errors(run):
    from edge.api.client import CloudApiError

    edge = edge_client(run["daemon"].api_port, timeout=30, retries=0)
    five = run["faces"] / "five_celebrity"
    try:
        same = edge.compare((five / "Madonna/val_1.jpg").read_bytes(), (five / "Madonna/val_2.jpg").read_bytes())
        diff = edge.compare((five / "Madonna/val_1.jpg").read_bytes(), (five / "Elton_John/val_1.jpg").read_bytes())
        assert same["similarity"] > diff["similarity"] and diff["similarity"] < 70
        with pytest.raises(CloudApiError) as unknown:
            edge.verify("nobody_here", (five / "Madonna/val_1.jpg").read_bytes())
        assert unknown.value.code == -1303  # not in the cache; the hub says it does not exist
        with pytest.raises(CloudApiError) as noface:
            edge.verify("madonna", (run["faces"] / SCENES[0]).read_bytes())
        assert noface.value.code == -1101
        with pytest.raises(CloudApiError) as broken:  # the failing image's own code, as on the hub
            edge.compare((five / "Madonna/val_1.jpg").read_bytes(), b"\xff\xd8\xff\xe0 not a jpeg")
        assert broken.value.code == -1102
        assert broken.value.data["fail_flag"] == 2 and broken.value.data["session_id"]
        with pytest.raises(CloudApiError) as sync_here:
            edge.call("sync", {"since": 0, "fingerprint": "x"})
        assert sync_here.value.code == 24  # the edge serves verify/identify/compare only
    finally:
        edge.close()


def test_metrics_count_frames_faces_and_decisions(run):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{run['daemon'].api_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("edge_") and " " in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    assert values["edge_frames_total"] == len(run["enrolled"]) + 1 + len(SCENES)
    assert values["edge_outbox_depth"] == 0
    assert sum(v for k, v in values.items() if k.startswith("edge_decisions_total")) == len(run["events"])
    assert values["edge_cache_persons"] == len(run["enrolled"])
    assert "process_resident_memory_bytes" in text
