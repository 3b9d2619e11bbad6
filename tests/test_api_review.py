"""Hub behaviours fixed in review against docs/CLOUD_API.md (real hub, real models, real photos)."""

from __future__ import annotations

import uuid

from tests.hub_fixtures import post, sdk_files


def test_newperson_for_an_existing_person_says_so_even_when_the_new_image_has_no_face(hub_server, faces_dir):
    pid = f"exists-{uuid.uuid4().hex[:6]}"
    face = (faces_dir / "five_celebrity/Ben_Afflek/train_1.jpg").read_bytes()
    nonface = sorted((faces_dir / "nonface").iterdir())[0].read_bytes()
    fields = {"appid": hub_server.appid, "person_id": pid, "group_ids": ["review"]}
    assert post(hub_server, "newperson", files=sdk_files(fields, {"image": face}))["code"] == 0
    again = post(hub_server, "newperson", files=sdk_files(fields, {"image": nonface}))
    assert again["code"] == -1302, again
    # and a new person with that image still gets the no-face code
    fresh = post(hub_server, "newperson", files=sdk_files({**fields, "person_id": pid + "x"}, {"image": nonface}))
    assert fresh["code"] == -1101
