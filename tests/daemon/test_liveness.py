"""Liveness in the daemon, end to end: real hub, real broker, real models, NUAA frames.

A person is enrolled on the hub from two of their live webcam frames. The daemon's camera then
plays six other live frames of that person, a scene (the face leaves), six frames of a printed
photo of the same person held to the webcam, and a scene. With [liveness] mode = require the
person is let in and the print refused as a presentation attack, locally (never asked at the
hub); with mode = off the print is let in, as it was before liveness existed.
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request

import pytest

from edge.dev.localenv import shared_faces_dir
from tests.conftest import free_port
from tests.support.broker import DaemonProc, daemon_over_frames, edge_auth, write_edge_config
from tests.support.hub import start_hub

NUAA = shared_faces_dir() / "liveness" / "nuaa"
ENROL = ["0001_00_00_01_0.jpg", "0001_00_00_01_63.jpg"]
LIVE = ["0001_00_00_02_0.jpg", "0001_00_00_02_5.jpg", "0001_00_00_02_28.jpg", "0001_00_00_02_68.jpg",
        "0001_00_00_02_86.jpg", "0001_00_00_02_116.jpg"]
PRINT = ["0001_00_00_01_54.jpg", "0001_00_00_01_77.jpg", "0001_00_00_01_120.jpg", "0001_00_00_01_143.jpg",
         "0001_00_00_01_166.jpg", "0001_00_00_01_210.jpg"]
SCENE = "nonface/skimage_coffee.png"


def _frames(folder, faces_dir, with_live: bool = True):
    folder.mkdir()
    n = 0
    for kind, names in ((("live", LIVE),) if with_live else ()) + (("print", PRINT),):
        for name in names:
            shutil.copy(NUAA / kind / "0001" / name, folder / f"{n:02d}_{kind}.jpg")
            n += 1
        shutil.copy(faces_dir / SCENE, folder / f"{n:02d}_scene.png")  # the face leaves: its track ends
        n += 1
    return folder


def _enrol(client) -> None:
    client.newperson("nuaa-0001", ["staff"], (NUAA / "live" / "0001" / ENROL[0]).read_bytes(), person_name="NUAA 0001")
    client.addface("nuaa-0001", [(NUAA / "live" / "0001" / ENROL[1]).read_bytes()])


def _run(tmp, faces_dir, liveness: dict, with_live: bool = True) -> dict:
    frames = _frames(tmp / "frames", faces_dir, with_live)
    # The scene between them ends the live person's track at once.
    with daemon_over_frames(tmp, frames, device="door-live", enrol=_enrol,
                            sections={"identify": {"groups": ["staff"]}, "tracker": {"max_missed": 0},
                                      "liveness": liveness}) as run:
        with urllib.request.urlopen(f"http://127.0.0.1:{run.api_port}/metrics", timeout=5) as r:
            metrics = r.read().decode()
        return {"events": run.events, "health": run.health, "metrics": metrics}


@pytest.fixture(scope="module")
def required(tmp_path_factory, faces_dir, models_dir):
    if not NUAA.is_dir():
        pytest.skip(f"liveness frames not found at {NUAA} (set EDGE_VERIFIER_SHARED)")
    return _run(tmp_path_factory.mktemp("require"), faces_dir, {"mode": "require", "frames": 3})


def test_the_live_person_is_let_in_and_their_printed_photo_is_refused(required):
    live, printed = required["events"]
    assert (live["decision"], live["person_id"]) == ("accept", "nuaa-0001")
    assert live["liveness"]["verdict"] == "live" and live["liveness"]["frames"] == 3
    assert "reason" not in live
    assert printed["decision"] == "reject" and printed["reason"] == "presentation_attack"
    assert printed["liveness"]["verdict"] == "attack" and printed["liveness"]["score"] < 0.012
    # Refused here, never sent to the hub as uncertain.
    assert printed["source"] == "local" and printed["cloud"] is None
    assert len(required["events"]) == 2
    assert (live["admits"], live["why_not"]) == (True, None)
    assert (printed["admits"], printed["why_not"]) == (False, "presentation_attack")


def test_with_liveness_flag_the_printed_photo_is_an_accept_no_door_opens_for(tmp_path, faces_dir, models_dir):
    """`flag` lets the print's match stand as an accept, for the record: a controller or Home
    Assistant acting on `decision` opened for it. The event says no door opens on it."""
    if not NUAA.is_dir():
        pytest.skip(f"liveness frames not found at {NUAA} (set EDGE_VERIFIER_SHARED)")
    (printed,) = _run(tmp_path, faces_dir, {"mode": "flag", "frames": 3}, with_live=False)["events"]
    assert (printed["decision"], printed["person_id"], printed["liveness"]["verdict"]) == ("accept", "nuaa-0001",
                                                                                         "attack")
    assert (printed["admits"], printed["why_not"]) == (False, "presentation_attack")


def test_health_shows_the_liveness_mode_model_and_threshold(required, models_dir):
    meta = json.loads((models_dir / "models.json").read_text())
    liveness = required["health"]["liveness"]
    assert liveness == {"mode": "require", "frames": 3, "threshold": 0.012, "cues": False,
                        "fingerprint": meta["models"][meta["packs"]["int8"]["files"]["liveness"]]["fingerprint"]}


def test_metrics_count_liveness_verdicts_of_frames_and_decisions(required):
    def value(name: str, verdict: str) -> float:
        m = re.search(rf'^{name}{{verdict="{verdict}"}} (\S+)$', required["metrics"], re.M)
        return float(m.group(1)) if m else 0.0

    assert value("edge_liveness_frames_total", "live") >= 3
    assert value("edge_liveness_frames_total", "attack") >= 3
    assert value("edge_liveness_decisions_total", "live") == 1
    assert value("edge_liveness_decisions_total", "attack") == 1
    # The live person's track is decided on its first 3 frames; its 3 later frames are not
    # scored (decided, no claim waiting). The print's track scores its 6 until it is settled.
    scored = sum(value("edge_liveness_frames_total", v) for v in ("live", "attack", "step_closer", "step_back"))
    assert 6 <= scored <= 9 < len(LIVE) + len(PRINT)


def test_mode_off_lets_the_print_in_as_before(tmp_path, faces_dir, models_dir):
    if not NUAA.is_dir():
        pytest.skip(f"liveness frames not found at {NUAA} (set EDGE_VERIFIER_SHARED)")
    result = _run(tmp_path, faces_dir, {"mode": "off"}, with_live=False)
    (printed,) = result["events"]
    assert (printed["decision"], printed["person_id"]) == ("accept", "nuaa-0001")
    assert printed["liveness"] is None and "reason" not in printed
    assert result["health"]["liveness"]["mode"] == "off"


def _scored(port: int) -> float:
    """Frames scored for liveness so far (every verdict and gate reason), from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(v) for v in re.findall(r'^edge_liveness_frames_total{verdict="\w+"} (\S+)$', text, re.M))


def test_a_decided_track_is_scored_again_only_for_a_claim_and_on_fresh_frames(tmp_path, models_dir):
    """The person stays at the camera (three live frames looping, one track). Identified on its
    first 3 frames, the track is not scored while nothing waits; a verify claim then gets 3
    fresh scores, not the ones from before the first decision, and scoring stops again."""
    import time

    import httpx


    if not NUAA.is_dir():
        pytest.skip(f"liveness frames not found at {NUAA} (set EDGE_VERIFIER_SHARED)")
    drop = tmp_path / "frames"
    drop.mkdir()
    for name in LIVE[:3]:
        shutil.copy(NUAA / "live" / "0001" / name, drop / name)
    with start_hub(tmp_path / "hub") as hub:
        client = hub.client(timeout=30.0, retries=0)
        client.newperson("nuaa-0001", ["staff"], (NUAA / "live" / "0001" / ENROL[0]).read_bytes())
        port = free_port()
        cfg = write_edge_config(tmp_path / "edge.toml", device="door-again", camera=f"files:{drop}/*",
                                broker=None, hub=hub, storage=tmp_path / "data", api_port=port, loop=True,
                                sections={"identify": {"groups": ["staff"]},
                                          "liveness": {"mode": "require", "frames": 3}})
        daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
        try:
            daemon.wait_health(lambda h: h["decisions"] >= 1 and h["pending"] == 0, 60)
            decided = _scored(port)
            time.sleep(2.0)  # about 8 more frames of the same, decided track
            before_claim = _scored(port)
            assert before_claim == decided >= 3
            ok = httpx.post(f"http://127.0.0.1:{port}/edge/claim", json={"appid": hub.appid, "person_id": "nuaa-0001"},
                            headers={"Authorization": edge_auth()}).json()
            assert ok["code"] == 0
            daemon.wait_health(lambda h: h["decisions"] >= 2, 30)
            after_claim = _scored(port)
            time.sleep(2.0)
            assert after_claim - before_claim >= 3  # fresh frames; the 3 old scores were dropped
            assert _scored(port) == after_claim  # decided again, nothing waits: no more scoring
        finally:
            assert daemon.terminate() == 0
            client.close()
    log = (tmp_path / "daemon.log").read_text()
    assert "decision identify accept nuaa-0001" in log and "decision verify accept nuaa-0001" in log


@pytest.mark.parametrize("mode", ["flag", "require"])
def test_the_local_api_judges_a_printed_photo_as_the_camera_does(tmp_path, models_dir, mode):
    """The edge's /face/verify and /face/identify ran no liveness: a kiosk posting a printed
    photo of a member was answered ismatch. Now they run [liveness] mode on the posted image's
    face (its x2.7 context crop, one frame): flag adds the verdict, require refuses (-1110)."""
    import httpx

    from edge.core import errors

    if not NUAA.is_dir():
        pytest.skip(f"liveness frames not found at {NUAA} (set EDGE_VERIFIER_SHARED)")
    with start_hub(tmp_path / "hub") as hub:
        client = hub.client(timeout=30.0, retries=0)
        client.newperson("nuaa-0001", ["staff"], (NUAA / "live" / "0001" / ENROL[0]).read_bytes())
        client.addface("nuaa-0001", [(NUAA / "live" / "0001" / ENROL[1]).read_bytes()])
        client.close()
        port = free_port()
        cfg = write_edge_config(tmp_path / "edge.toml", device="door-api-live", camera=f"files:{tmp_path}/none/*",
                                broker=None, hub=hub, storage=tmp_path / "data", api_port=port,
                                sections={"identify": {"groups": ["staff"]}, "liveness": {"mode": mode}})
        daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
        try:
            daemon.wait_health(lambda h: h["sync"].get("status") == "ok" and h["cache"]["faces"] >= 2, 60)

            def ask(op: str, photo: str, kind: str) -> dict:
                fields = {"appid": hub.appid, **({"person_id": "nuaa-0001"} if op == "verify" else
                                                 {"group_id": "staff"})}
                files = [(k, (None, v)) for k, v in fields.items()]
                files.append(("image", ("f.jpg", (NUAA / kind / "0001" / photo).read_bytes(), "image/jpeg")))
                return httpx.post(f"http://127.0.0.1:{port}/face/{op}", files=files, timeout=30,
                                  headers={"Authorization": edge_auth()}).json()

            for op in ("verify", "identify"):
                attack, live = ask(op, PRINT[1], "print"), ask(op, LIVE[0], "live")
                assert live["code"] == 0 and live["data"]["liveness"]["verdict"] == "live", live
                assert attack["data"]["liveness"]["verdict"] == "attack", attack
                assert attack["data"]["liveness"]["mode"] == mode
                if mode == "flag":
                    assert attack["code"] == 0, attack
                else:
                    assert attack["code"] == errors.PRESENTATION_ATTACK, attack
            assert live["data"]["candidates"][0]["person_id"] == "nuaa-0001"
        finally:
            assert daemon.terminate() == 0


def test_with_cues_the_daemon_runs_the_fusion_and_refuses_the_print(tmp_path, faces_dir, models_dir):
    """[liveness] cues = true: the daemon loads the shipped fusion (health says so, with the
    fused threshold) and refuses the print with it."""
    import math

    from edge.vision.liveness import FusedLiveness

    if not NUAA.is_dir():
        pytest.skip(f"liveness frames not found at {NUAA} (set EDGE_VERIFIER_SHARED)")
    result = _run(tmp_path, faces_dir, {"mode": "require", "frames": 3, "cues": True}, with_live=False)
    (printed,) = result["events"]
    assert printed["decision"] == "reject" and printed["reason"] == "presentation_attack"
    assert printed["liveness"]["verdict"] == "attack"
    health = result["health"]["liveness"]
    assert health["cues"] is True
    assert health["threshold"] == pytest.approx(1 / (1 + math.exp(-FusedLiveness.load().threshold)))


def _slid_over(attacker, member, fraction: float, pipeline):
    """`attacker`'s frame with the left `fraction` of the region around their face replaced by
    `member`'s face, warped onto theirs by the landmarks: a photo slid across a live face."""
    import cv2
    import numpy as np

    (af,), (mf,) = pipeline.detect(attacker)[:1], pipeline.detect(member)[:1]
    warp, _ = cv2.estimateAffinePartial2D(mf.landmarks.astype(np.float32), af.landmarks.astype(np.float32))
    warped = cv2.warpAffine(member, warp, (attacker.shape[1], attacker.shape[0]))
    x, y, w, h = af.box
    x0, x1, y0, y1 = max(0, int(x - 0.25 * w)), int(x + 1.25 * w), max(0, int(y - 0.3 * h)), int(y + 1.2 * h)
    cut = int(x0 + fraction * (x1 - x0))
    out = attacker.copy()
    out[y0:y1, x0:cut] = warped[y0:y1, x0:cut]
    return out


def test_a_members_photo_slid_over_a_live_face_is_not_let_in(tmp_path, faces_dir, models_dir):
    """A stranger shows their own live face, then slides a member's photo across it: each frame
    looked enough like the one before to stay one track, and the verdict of the track's last
    five scored frames was the stranger's live face while identity was decided on the last frame
    alone: the door opened for the member. The verdict now counts only frames that could be the
    person decided: three such frames are no verdict, so no decision for the member."""
    import cv2

    from edge.vision import Pipeline

    if not NUAA.is_dir():
        pytest.skip(f"liveness frames not found at {NUAA} (set EDGE_VERIFIER_SHARED)")
    pipeline = Pipeline.load(models_dir, precision="int8", threads=1)
    stranger = sorted((NUAA / "live" / "0002").glob("*.jpg"))[:6]
    member = cv2.imread(str(NUAA / "live" / "0001" / LIVE[0]))
    frames = tmp_path / "frames"
    frames.mkdir()
    for n, path in enumerate(stranger[:5]):
        shutil.copy(path, frames / f"{n:02d}_live.jpg")
    base = cv2.imread(str(stranger[5]))
    for n, fraction in enumerate((0.5, 0.6, 0.7), start=5):
        cv2.imwrite(str(frames / f"{n:02d}_slid.png"), _slid_over(base, member, fraction, pipeline))
    shutil.copy(faces_dir / SCENE, frames / "09_scene.png")
    with daemon_over_frames(tmp_path, frames, device="door-slide", enrol=_enrol,
                            sections={"identify": {"groups": ["staff"]}, "tracker": {"max_missed": 0},
                                      "liveness": {"mode": "require", "frames": 5}}) as run:
        events = run.events
    assert not [e for e in events if e.get("person_id") == "nuaa-0001" and e["decision"] == "accept"], events


def test_flag_mode_decides_a_print_with_its_verdict_and_the_door_refuses_it(tmp_path, faces_dir, models_dir):
    """In flag mode a track was decided on its first frame, before any verdict: the print of a
    member was an accept with no verdict, and the door opened for it (it refuses only a verdict
    of attack). Flag mode now waits for the verdict like require; the decision stands for the
    record, the door refuses it."""
    if not NUAA.is_dir():
        pytest.skip(f"liveness frames not found at {NUAA} (set EDGE_VERIFIER_SHARED)")
    frames = _frames(tmp_path / "run", faces_dir, with_live=False)
    with daemon_over_frames(tmp_path, frames, device="door-flag", enrol=_enrol,
                            sections={"identify": {"groups": ["staff"]}, "tracker": {"max_missed": 0},
                                      "liveness": {"mode": "flag", "frames": 3}, "door": {"backend": "none"}}) as run:
        decided = run.events
        assert run.sub.wait_for(lambda: any(e.get("kind") in ("grant", "deny")
                                            for e in run.sub.json("/door/main/event")), 15)
        door = [e for e in run.sub.json("/door/main/event") if e.get("kind") in ("grant", "deny")]
    assert [(e["decision"], e["person_id"], e["liveness"]["verdict"]) for e in decided] \
        == [("accept", "nuaa-0001", "attack")]
    assert [(e["kind"], e["reason"]) for e in door] == [("deny", "not_accepted:presentation_attack")]
