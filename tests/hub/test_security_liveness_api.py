"""Liveness on the API channels (issue 24, item 10): a kiosk that verifies through the hub's
/face/verify or /face/identify was not protected against a printed photo, which only the camera
path checked. A real hub on loopback, real models, NUAA frames: a printed photo of the enrolled
person held to the webcam, and a live frame of that person.

Per frame the int8 and fp32 liveness models score the live frame 0.29 / 0.42 and the print
under 1e-6 (threshold 0.012): far from the threshold on both sides.
"""

from __future__ import annotations

import pytest

from edge.core import errors
from edge.dev.localenv import shared_faces_dir
from tests.support.hub import post, sdk_files, start_hub

NUAA = shared_faces_dir() / "liveness" / "nuaa"
ENROL = ["0001_00_00_01_0.jpg", "0001_00_00_01_63.jpg"]
LIVE = NUAA / "live" / "0001" / "0001_00_00_02_0.jpg"
PRINT = NUAA / "print" / "0001" / "0001_00_00_01_77.jpg"  # the same person's printed photo
PERSON = "nuaa-0001"

pytestmark = pytest.mark.skipif(not NUAA.is_dir(), reason=f"liveness frames not found at {NUAA}")


def _enrol(hub) -> None:
    client = hub.client(timeout=30.0, retries=0)
    try:
        client.newperson(PERSON, ["staff"], (NUAA / "live" / "0001" / ENROL[0]).read_bytes())
        client.addface(PERSON, [(NUAA / "live" / "0001" / ENROL[1]).read_bytes()])
    finally:
        client.close()


def _verify(hub, photo):
    return post(hub, "verify", files=sdk_files({"appid": hub.appid, "person_id": PERSON},
                                               {"image": photo.read_bytes()}))


def _identify(hub, photo):
    return post(hub, "identify", files=sdk_files({"appid": hub.appid, "group_id": "staff"},
                                                 {"image": photo.read_bytes()}))


def test_by_default_the_hub_flags_a_printed_photo_in_its_answer(tmp_path, models_dir):
    with start_hub(tmp_path) as hub:  # no [liveness] section: the default, flag
        _enrol(hub)
        attack = _verify(hub, PRINT)
        # the print matches the person: before liveness, a kiosk had nothing else to go on
        assert attack["code"] == 0 and attack["data"]["ismatch"] is True, attack
        assert attack["data"]["liveness"]["verdict"] == "attack" and attack["data"]["liveness"]["mode"] == "flag"
        assert attack["data"]["liveness"]["score"] < 0.012
        live = _verify(hub, LIVE)
        assert live["code"] == 0 and live["data"]["ismatch"] is True, live
        assert live["data"]["liveness"]["verdict"] == "live"
        found = _identify(hub, PRINT)
        assert found["code"] == 0 and found["data"]["candidates"][0]["person_id"] == PERSON, found
        assert found["data"]["liveness"]["verdict"] == "attack"


def test_with_liveness_required_the_hub_refuses_a_printed_photo(tmp_path, models_dir):
    with start_hub(tmp_path, liveness={"mode": "require"}) as hub:
        _enrol(hub)
        for refused in (_verify(hub, PRINT), _identify(hub, PRINT)):
            assert refused["code"] == errors.PRESENTATION_ATTACK, refused
            assert refused["data"]["liveness"]["verdict"] == "attack"
            assert "ismatch" not in refused["data"] and "candidates" not in refused["data"]
        live = _verify(hub, LIVE)
        assert live["code"] == 0 and live["data"]["ismatch"] is True, live
        assert live["data"]["liveness"] == {**live["data"]["liveness"], "verdict": "live", "mode": "require"}
        assert _identify(hub, LIVE)["data"]["candidates"][0]["person_id"] == PERSON


def test_with_liveness_off_the_answer_is_the_legacy_one(tmp_path, models_dir):
    with start_hub(tmp_path, liveness={"mode": "off"}) as hub:
        _enrol(hub)
        answer = _verify(hub, PRINT)
        assert answer["code"] == 0 and set(answer["data"]) == {"session_id", "confidence", "ismatch"}
