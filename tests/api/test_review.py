"""Hub behaviours fixed in review against the vendor API (real hub, real models, real photos)."""

from __future__ import annotations

import uuid

from tests.support.hub import post, sdk_files


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


def test_compare_without_appid_uses_the_signed_one_as_the_endpoint_table_allows(hub_server, faces_dir):
    root = faces_dir / "five_celebrity"
    images = {"imageA": (root / "Ben_Afflek/train_1.jpg").read_bytes(),
              "imageB": (root / "Ben_Afflek/val_1.jpg").read_bytes()}
    body = post(hub_server, "compare", files=sdk_files({}, images))
    assert body["code"] == 0 and body["data"]["similarity"] > 50, body
    # an appid that is given must still be the signed one
    other = post(hub_server, "compare", files=sdk_files({"appid": hub_server.other_appid}, images))
    assert other["code"] == 6
    # every other endpoint still requires it
    assert post(hub_server, "getgroupids", json={})["code"] == -1301
