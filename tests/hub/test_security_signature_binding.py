"""A single-use signature is bound to its endpoint and used up only by a well-formed request
(issue 24, item 1): attacks with a sniffed one, against a real hub on loopback."""

from __future__ import annotations

import base64

from edge.core import errors
from edge.core.signature import sign
from tests.support.hub import post, start_hub


def test_a_single_use_signature_made_for_one_endpoint_is_refused_on_another(tmp_path, photos):
    """Sniffed on its way to /face/getinfo, it once enrolled whoever replayed it on newperson
    (the legacy signature does not cover the body): now only getinfo takes it, and the refusal
    does not use it up."""
    with start_hub(tmp_path) as hub:
        sniffed = sign(hub.appid, hub.secret_id, hub.secret_key, expiry=0, fileid="/face/getinfo")
        image = base64.b64encode(photos("Ben_Afflek", "train_1")).decode()
        enrol = {"appid": hub.appid, "person_id": "intruder", "group_ids": ["door"], "image": image}
        refused = post(hub, "newperson", json=enrol, authorization=sniffed)
        assert refused["code"] == errors.SIGNATURE_INVALID and "/face/newperson" in refused["message"], refused
        assert post(hub, "getinfo", json={"appid": hub.appid, "person_id": "intruder"})["code"] == errors.PERSON_UNKNOWN
        # the genuine request, on the endpoint it was made for, still gets its one use
        genuine = post(hub, "getinfo", json={"appid": hub.appid, "person_id": "intruder"}, authorization=sniffed)
        assert genuine["code"] == errors.PERSON_UNKNOWN, genuine
        again = post(hub, "getinfo", json={"appid": hub.appid, "person_id": "intruder"}, authorization=sniffed)
        assert again["code"] == errors.REPLAY
        # an `f` naming a file, as the legacy docs' single-use example, binds to no endpoint here
        legacy = sign(hub.appid, hub.secret_id, hub.secret_key, expiry=0, fileid=f"/{hub.appid}/bucket/photo.jpg")
        refused = post(hub, "getgroupids", json={"appid": hub.appid}, authorization=legacy)
        assert refused["code"] == errors.SIGNATURE_INVALID


def test_a_sniffed_single_use_signature_sent_with_another_appid_does_not_burn_it(tmp_path):
    """It was used up before the body's appid was compared with the signed one: the copy was
    refused (6) but the genuine request then got 13."""
    with start_hub(tmp_path) as hub:
        once = sign(hub.appid, hub.secret_id, hub.secret_key, expiry=0, fileid="/face/getgroupids")
        copy = post(hub, "getgroupids", json={"appid": hub.other_appid}, authorization=once)
        assert copy["code"] == errors.APPID_MISMATCH, copy
        broken = post(hub, "getgroupids", data=b"{not json", authorization=once,
                      headers={"Content-Type": "application/json"})
        assert broken["code"] != 0
        assert post(hub, "getgroupids", json={"appid": hub.appid}, authorization=once)["code"] == 0
        assert post(hub, "getgroupids", json={"appid": hub.appid}, authorization=once)["code"] == errors.REPLAY
