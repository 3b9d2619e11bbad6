"""The sync feed's wire format: what the hub encodes is what the edge decodes, field for field."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from edge.core.credentials import Credential
from edge.core.syncwire import FaceChange, MalformedChange, PersonChange, decode, encode


def test_a_person_and_a_face_travel_as_the_documented_json_and_come_back_the_same():
    vector = np.array([0.25, -1.5, 3.0], dtype=np.float32)
    person = PersonChange(7, "p1", person_name="Ann", tag="vip", group_ids=("staff", "night"),
                          credentials=(Credential("h10301", 12345, facility=42),))
    face = FaceChange(8, "1000000000000000001", "p1", embedding=vector, quality=0.93)
    wire = json.loads(json.dumps([encode(person), encode(face)]))
    assert wire[0] == {"seq": 7, "type": "person", "person_id": "p1", "deleted": False,
                       "person_name": "Ann", "tag": "vip", "group_ids": ["staff", "night"],
                       "credentials": [{"format": "h10301", "facility": 42, "number": 12345}]}
    assert wire[1] == {"seq": 8, "type": "face", "face_id": "1000000000000000001", "person_id": "p1",
                       "deleted": False, "embedding": base64.b64encode(vector.astype("<f4").tobytes()).decode(),
                       "quality": 0.93}
    assert decode(wire[0]) == person
    back = decode(wire[1])
    assert (back.seq, back.face_id, back.person_id, back.deleted, back.quality) == (8, face.face_id, "p1", False, 0.93)
    assert np.array_equal(back.embedding, vector)


def test_deleted_entities_carry_only_their_ids():
    assert encode(PersonChange(3, "p1", deleted=True)) == {"seq": 3, "type": "person", "person_id": "p1",
                                                          "deleted": True}
    assert encode(FaceChange(4, "f1", "p1", deleted=True)) == {"seq": 4, "type": "face", "face_id": "f1",
                                                              "person_id": "p1", "deleted": True}
    assert decode({"seq": 4, "type": "face", "face_id": "f1", "deleted": True}).deleted


@pytest.mark.parametrize("data, message", [
    ("not an object", "not an object"),
    ({"seq": 2, "type": "person", "person_id": "p", "credentials": {"format": "raw"}}, "credentials is not a list"),
    ({"seq": 2, "type": "person", "person_id": "p", "credentials": [{"format": "raw", "number": 1}]},
     "bits is required"),
    ({"seq": 2, "type": "face", "face_id": "f", "person_id": "p", "embedding": "not base64!"}, "malformed change 2"),
    ({"seq": 2, "type": "face", "face_id": "f", "person_id": "p", "embedding": ""}, "empty or non-finite"),
    ({"seq": 2, "type": "group", "group_id": "g"}, "unknown change type 'group'"),
    ({"seq": 2, "type": "person"}, "malformed change 2"),
])
def test_a_malformed_change_is_refused_saying_why(data, message):
    with pytest.raises(MalformedChange, match=message):
        decode(data)
