"""Conformance of the hub to the vendor face API: every endpoint in both encodings, the exact
envelopes, and requests shaped like the vendor's Python SDK (real hub, real models, real photos)."""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.support.hub import post, sdk_files

STR, INT, FLOAT, BOOL, LIST = str, int, (int, float), bool, list

FACE_FIELDS = {"face_id": STR, "x": INT, "y": INT, "width": INT, "height": INT, "gender": INT, "age": INT,
               "expression": INT, "glass": BOOL, "pitch": FLOAT, "yaw": FLOAT, "roll": FLOAT}

SHAPES = {
    "newperson": {"session_id": STR, "suc_group": INT, "suc_face": INT, "person_id": STR, "face_id": STR,
                  "group_ids": LIST},
    "delperson": {"session_id": STR, "person_id": STR, "deleted": INT},
    "addface": {"session_id": STR, "added": INT, "face_ids": LIST, "ret_codes": LIST},
    "delface": {"session_id": STR, "deleted": INT, "face_ids": LIST},
    "setinfo": {"session_id": STR, "person_id": STR},
    "getinfo": {"person_id": STR, "person_name": STR, "tag": STR, "face_ids": LIST, "group_ids": LIST,
                "session_id": STR},
    "getgroupids": {"group_ids": LIST},
    "getpersonids": {"person_ids": LIST},
    "getfaceids": {"face_ids": LIST},
    "getfaceinfo": {"face_info": dict},
    "addgroupids": {"person_id": STR, "added": INT, "group_ids": LIST, "session_id": STR},
    "delgroupids": {"person_id": STR, "deleted": INT, "group_ids": LIST, "session_id": STR},
    "verify": {"session_id": STR, "confidence": FLOAT, "ismatch": BOOL},
    "identify": {"session_id": STR, "candidates": LIST},
    "compare": {"session_id": STR, "similarity": FLOAT},
    "detect": {"session_id": STR, "image_width": INT, "image_height": INT, "face": LIST},
    "sync": {"cursor": INT, "has_more": BOOL, "fingerprint": STR, "changes": LIST},
}


def check_shape(op: str, body: dict) -> dict:
    assert body["_status"] == 200
    assert body["code"] == 0, body
    assert body["message"] == "OK"
    data = body["data"]
    for key, typ in SHAPES[op].items():
        assert key in data, f"{op}: {key} missing from {data}"
        assert isinstance(data[key], typ) and not (typ is INT and isinstance(data[key], bool)), \
            f"{op}.{key}: {data[key]!r}"
    return data


def check_face(face: dict) -> None:
    for key, typ in FACE_FIELDS.items():
        assert isinstance(face[key], typ), f"face.{key}: {face.get(key)!r}"
        assert not (typ is INT and isinstance(face[key], bool))


class Sender:
    """Sends one call in the chosen encoding: JSON (with bucket, base64 images) or SDK multipart."""

    def __init__(self, hub, encoding: str):
        self.hub, self.encoding = hub, encoding

    def __call__(self, op: str, fields: dict, images: dict | None = None) -> dict:
        fields = {"appid": self.hub.appid, **fields}
        if self.encoding == "json":
            body = {**fields, "bucket": "legacybucket"}
            for name, blob in (images or {}).items():
                if name.startswith("images["):
                    body.setdefault("images", []).append(base64.b64encode(blob).decode())
                else:
                    body[name] = base64.b64encode(blob).decode()
            return post(self.hub, op, json=body)
        return post(self.hub, op, files=sdk_files(fields, images))


@pytest.mark.parametrize("encoding", ["json", "multipart"])
def test_every_endpoint_answers_its_documented_envelope(hub_server, photos, encoding):
    ben1 = photos("Ben_Afflek", "train_1")
    ben2 = photos("Ben_Afflek", "train_2")
    ben3 = photos("Ben_Afflek", "train_3")
    ben_val = photos("Ben_Afflek", "val_1")
    madonna = photos("Madonna", "val_1")
    send = Sender(hub_server, encoding)
    pid, g1, g2 = f"p-{encoding}-{uuid.uuid4().hex[:6]}", f"g1-{encoding}", f"g2-{encoding}"

    d = check_shape("newperson", send("newperson", {"person_id": pid, "group_ids": [g1], "person_name": "Ben",
                                                    "tag": "staff"}, {"image": ben1}))
    assert d["person_id"] == pid and d["suc_group"] == 1 and d["suc_face"] == 1 and d["group_ids"] == [g1]
    first_face = d["face_id"]
    assert first_face.isdigit()

    d = check_shape("addface", send("addface", {"person_id": pid, "tag": "t"},
                                    {"images[0]": ben2, "images[1]": ben3}))
    assert d["added"] == 2 and d["ret_codes"] == [0, 0] and all(f.isdigit() for f in d["face_ids"])

    d = check_shape("getinfo", send("getinfo", {"person_id": pid}))
    assert d["person_name"] == "Ben" and d["tag"] == "staff" and d["group_ids"] == [g1] and len(d["face_ids"]) == 3

    d = check_shape("getfaceids", send("getfaceids", {"person_id": pid}))
    assert first_face in d["face_ids"] and len(d["face_ids"]) == 3

    d = check_shape("getfaceinfo", send("getfaceinfo", {"face_id": first_face}))
    check_face(d["face_info"])
    assert d["face_info"]["face_id"] == first_face and d["face_info"]["width"] > 0

    d = check_shape("setinfo", send("setinfo", {"person_id": pid, "person_name": "Benjamin"}))
    assert send("getinfo", {"person_id": pid})["data"]["person_name"] == "Benjamin"

    d = check_shape("addgroupids", send("addgroupids", {"person_id": pid, "group_ids": [g1, g2]}))
    assert d["added"] == 1 and d["group_ids"] == [g2]
    assert g2 in check_shape("getgroupids", send("getgroupids", {}))["group_ids"]
    assert check_shape("getpersonids", send("getpersonids", {"group_id": g2}))["person_ids"] == [pid]

    d = check_shape("delgroupids", send("delgroupids", {"person_id": pid, "group_ids": [g2]}))
    assert d["deleted"] == 1 and d["group_ids"] == [g2]

    d = check_shape("verify", send("verify", {"person_id": pid}, {"image": ben_val}))
    assert d["ismatch"] is True and 70 <= d["confidence"] <= 100
    d = check_shape("verify", send("verify", {"person_id": pid}, {"image": madonna}))
    assert d["ismatch"] is False and 0 <= d["confidence"] < 70

    d = check_shape("identify", send("identify", {"group_id": g1}, {"image": ben_val}))
    best = d["candidates"][0]
    assert best["person_id"] == pid and isinstance(best["face_id"], str) and isinstance(best["confidence"], float)
    assert isinstance(best["tag"], str) and len(d["candidates"]) <= 5

    d = check_shape("compare", send("compare", {}, {"imageA": ben1, "imageB": ben_val}))
    assert 0 <= d["similarity"] <= 100 and "fail_flag" not in d

    d = check_shape("detect", send("detect", {"mode": 1}, {"image": ben_val}))
    assert len(d["face"]) == 1 and d["image_width"] > 0 and d["image_height"] > 0
    check_face(d["face"][0])

    fingerprint = hub_server.app.state.service.vision.primary.fingerprint
    d = check_shape("sync", send("sync", {"since": 0, "fingerprint": fingerprint, "limit": 1000,
                                          "group_ids": [g1]}))
    mine = [c for c in d["changes"] if c["person_id"] == pid]
    assert {c["type"] for c in mine} == {"person", "face"} and d["fingerprint"] == fingerprint
    person = next(c for c in mine if c["type"] == "person")
    assert person["person_name"] == "Benjamin" and person["group_ids"] == [g1] and person["deleted"] is False
    face = next(c for c in mine if c["type"] == "face" and c["face_id"] == first_face)
    assert isinstance(face["seq"], int) and isinstance(face["embedding"], str) and isinstance(face["quality"], float)
    assert len(base64.b64decode(face["embedding"])) % 4 == 0

    d = check_shape("delface", send("delface", {"person_id": pid, "face_ids": [first_face]}))
    assert d["deleted"] == 1 and d["face_ids"] == [first_face]

    d = check_shape("delperson", send("delperson", {"person_id": pid}))
    assert d["person_id"] == pid and d["deleted"] == 1
    assert send("getinfo", {"person_id": pid})["code"] == -1303


def test_every_verify_gets_a_unique_recorded_session(hub_server, hub_client, photos):
    ben1, ben_val, madonna = photos("Ben_Afflek", "train_1"), photos("Ben_Afflek", "val_1"), photos("Madonna", "val_1")
    pid = f"sess-{uuid.uuid4().hex[:6]}"
    hub_client.newperson(pid, ["sessions"], ben1)
    first = hub_client.verify(pid, ben_val)
    second = hub_client.verify(pid, madonna)
    assert first["session_id"] != second["session_id"]
    record = hub_server.store.get_verify(first["session_id"])
    assert record.person_id == pid and record.ismatch is True and record.confidence == first["confidence"]
    assert hub_server.store.get_verify(second["session_id"]).ismatch is False


def test_detect_mode_0_reports_every_face_and_mode_1_the_largest(hub_client, faces_dir):
    import cv2
    import numpy as np

    a = cv2.imread(str(faces_dir / "five_celebrity/Madonna/val_1.jpg"))
    b = cv2.imread(str(faces_dir / "five_celebrity/Ben_Afflek/val_1.jpg"))
    b = cv2.resize(b, (b.shape[1] * a.shape[0] // b.shape[0] // 2, a.shape[0] // 2))
    canvas = np.zeros((a.shape[0], a.shape[1] + b.shape[1], 3), np.uint8)
    canvas[:, : a.shape[1]] = a
    canvas[: b.shape[0], a.shape[1]:] = b
    both = cv2.imencode(".jpg", canvas)[1].tobytes()
    all_faces = hub_client.detect(both, mode=0)["face"]
    largest = hub_client.detect(both, mode=1)["face"]
    assert len(all_faces) >= 2 and len(largest) == 1
    assert largest[0]["width"] * largest[0]["height"] == max(f["width"] * f["height"] for f in all_faces)


def test_compare_names_the_image_without_a_face(hub_server, photos):
    ben1, nonface = photos("Ben_Afflek", "train_1"), photos.nonface()
    send = Sender(hub_server, "multipart")
    body = send("compare", {}, {"imageA": ben1, "imageB": nonface})
    assert body["code"] == -1101 and body["data"]["fail_flag"] == 2
    body = send("compare", {}, {"imageA": nonface, "imageB": ben1})
    assert body["code"] == -1101 and body["data"]["fail_flag"] == 1


def test_unknown_endpoint_and_wrong_method_still_answer_json(hub_server):
    import requests

    body = post(hub_server, "nosuchop", json={"appid": hub_server.appid})
    assert body["_status"] == 200 and body["code"] == 21
    resp = requests.get(f"{hub_server.url}/face/verify", timeout=10)
    assert resp.status_code == 405 and resp.json()["code"] == 3


def test_health_and_metrics_are_served_beside_the_api(hub_server, hub_client):
    import requests

    hub_client.getgroupids()
    health = requests.get(f"{hub_server.url}/health", timeout=10).json()
    assert health["status"] == "ok" and health["role"] == "hub"
    metrics = requests.get(f"{hub_server.url}/metrics", timeout=10)
    assert 'face_api_requests_total{code="0",op="getgroupids"}' in metrics.text
