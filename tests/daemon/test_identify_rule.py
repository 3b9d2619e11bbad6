"""`[identify] rule = "best-or-template"` in a real daemon run: real hub, models, photos and mosquitto.

Five people enrolled with three photos each; the camera plays a held-out photo of each and an LFW
stranger. Under the rule every person is still admitted as themselves, the stranger is not, and
the events and /health say which rule and which threshold applied.
"""

from __future__ import annotations

import shutil

from edge.core.false_admit import TEMPLATE_RULE
from edge.core.matcher import thresholds_for
from tests.support.broker import daemon_over_frames, enrol_five

STRANGER = "lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg"


def test_the_template_rule_admits_the_enrolled_and_says_which_threshold_applied(tmp_path, faces_dir, models_dir):
    frames = tmp_path / "frames"
    frames.mkdir()
    people = sorted(p for p in (faces_dir / "five_celebrity").iterdir() if p.is_dir())
    for i, person in enumerate(people):
        shutil.copy(person / "val_1.jpg", frames / f"{2 * i:02d}_{person.name.lower()}.jpg")
        shutil.copy(faces_dir / "nonface/skimage_coffee.png", frames / f"{2 * i + 1:02d}_scene.png")  # ends the track
    shutil.copy(faces_dir / STRANGER, frames / "99_stranger.jpg")

    enrolled: dict[str, str] = {}
    with daemon_over_frames(tmp_path, frames, device="door-rule",
                            enrol=lambda c: enrolled.update(enrol_five(c, faces_dir, photos=3)),
                            sections={"identify": {"groups": ["staff"], "rule": TEMPLATE_RULE}}) as ran:
        events, health = ran.events, ran.health

    # each photo is a track of one look: it may spend half the rate ([identify] rate_per = approach)
    rule = thresholds_for("int8", false_admit_rate=1e-3 * 0.5, rule=TEMPLATE_RULE)
    own = rule.person_accept(persons=5, photos=3, faces=15)  # everyone enrolled with three photos
    assert health["thresholds"]["identify_rule"] == TEMPLATE_RULE
    assert health["thresholds"]["identify_rate_per"] == "approach"
    assert health["thresholds"]["identify"] == own
    assert len(events) == len(enrolled) + 1
    accepted = {e["person_id"] for e in events if e["decision"] == "accept"}
    assert accepted == set(enrolled)
    stranger = [e for e in events if e["person_id"] not in accepted or e["decision"] != "accept"]
    assert len(stranger) == 1 and stranger[0]["decision"] in ("unknown", "reject")
    for e in events:
        assert e["mode"] == "identify" and e["rule"] == TEMPLATE_RULE
        assert (e["look"], e["rate_share"]) == (1, 0.5)
        assert e["threshold"] == round(own + e["condition"]["margin"], 4)
        if e["decision"] == "accept":
            assert e["score"] >= e["threshold"]
