"""The door with several frames per approach: the daemon decides each track on the evidence
of its frames (edge.daemon.evidence), applies identify's threshold for the gallery it holds,
and says which threshold it applied in the event, /health and the state topic.

Real photos, models, hub and mosquitto; the daemon as a process with a files: camera. A member
walks up in three frames (three different photos of Jerry Seinfeld framed at the same place:
one track), then a stranger in three frames (three LFW photos of one person not enrolled).
"""

from __future__ import annotations

import json
import shutil

from edge.core.false_admit import TEMPLATE_RULE
from edge.core.matcher import thresholds_for
from tests.daemon.test_settle import _framed, play_to_the_end
from tests.support.hub import hub_with_five_enrolled

SCENE = "nonface/skimage_coffee.png"
MEMBER = ["five_celebrity/Jerry_Seinfield/val_1.jpg", "five_celebrity/Jerry_Seinfield/val_2.jpg",
          "five_celebrity/Jerry_Seinfield/val_3.jpg"]
STRANGER = ["lfw/Gerhard_Schroeder/Gerhard_Schroeder_0005.jpg", "lfw/Gerhard_Schroeder/Gerhard_Schroeder_0017.jpg",
            "lfw/Gerhard_Schroeder/Gerhard_Schroeder_0025.jpg"]


def test_each_approach_is_one_decision_on_its_frames_with_the_threshold_applied(
        mosquitto, subscribe, faces_dir, models_dir, tmp_path):
    from edge.core.matcher import CALIBRATED_THRESHOLDS
    from edge.vision import Pipeline

    pipeline = Pipeline.load(models_dir, precision="int8")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, photo in enumerate(MEMBER):
        _framed(pipeline, faces_dir / photo, frames / f"0{i}_member.jpg")
    shutil.copy(faces_dir / SCENE, frames / "10_scene.png")
    for i, photo in enumerate(STRANGER):
        _framed(pipeline, faces_dir / photo, frames / f"2{i}_stranger.jpg")
    shutil.copy(faces_dir / SCENE, frames / "30_scene.png")

    events_sub = subscribe("test/door-d/event")
    state_sub = subscribe("test/door-d/state")
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub:
        health = play_to_the_end(hub, mosquitto, tmp_path, frames, "door-d", events_sub)
    accept = CALIBRATED_THRESHOLDS["int8"].accept
    identify = health["thresholds"]["identify"]
    assert health["thresholds"]["false_admit_rate"] == 1e-3
    assert health["cache"]["faces"] == 10 and identify >= accept
    states = [json.loads(p) for _, p, _ in state_sub.messages]
    assert states and all(s["thresholds"]["identify"] == identify for s in states)

    events = events_sub.json()
    assert len(events) == health["decisions"] == 2, events  # one per approach, not one per frame
    member, stranger = events
    assert (member["decision"], member["person_id"]) == ("accept", "jerry_seinfield")
    # the threshold applied: the gallery's, raised by the margin of the face's condition band
    assert member["threshold"] == round(identify + member["condition"]["margin"], 4) <= member["score"]
    assert member["condition"]["withheld"] is None
    assert set(member["condition"]["bands"]) == {"size", "pose", "sharpness"}
    assert stranger["track_id"] != member["track_id"]
    # The stranger is decided on all three frames, locally: the hub is not asked about identify.
    assert (stranger["decision"], stranger["frames"], stranger["source"]) == ("unknown", 3, "local")
    assert stranger["cloud"] is None
    # A track's looks share the false-admit rate ([identify] rate_per = approach): the member was
    # admitted on the first look, at /health's threshold; the stranger's decision is its best
    # frame's, which spent 1/2, 1/4 or 1/8 of the rate as the track's look 1, 2 or 3.
    assert (member["look"], member["rate_share"]) == (1, 0.5)
    assert stranger["look"] in (1, 2, 3) and stranger["rate_share"] == 0.5 ** stranger["look"]
    spent = thresholds_for("int8", false_admit_rate=1e-3 * stranger["rate_share"], rule=TEMPLATE_RULE)
    own = spent.person_accept(persons=5, photos=2, faces=10)  # five enrolled with two photos each
    assert own >= identify and (stranger["look"] == 1) == (own == identify)
    assert stranger["threshold"] == round(own + stranger["condition"]["margin"], 4) > stranger["score"]
