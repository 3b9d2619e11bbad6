"""Every documented business and limit error code, reached through a real hub over HTTP."""

from __future__ import annotations

import base64
import json
import uuid

import pytest

from edge.core import errors
from tests.support.hub import post, sdk_files, start_hub


def new_id(prefix="p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def newperson(hub, person_id, image, group_ids=("errors",)):
    return post(hub, "newperson", files=sdk_files({"appid": hub.appid, "person_id": person_id,
                                                   "group_ids": list(group_ids)}, {"image": image}))


def test_photo_without_a_face_is_minus_1101(hub_server, photos):
    nonface = photos.nonface()
    assert newperson(hub_server, new_id(), nonface)["code"] == -1101


def test_undecodable_image_is_minus_1102(hub_server):
    assert newperson(hub_server, new_id(), b"\xff\xd8\xff\xe0" + b"\x00" * 64)["code"] == -1102


def test_invalid_base64_image_is_minus_1102(hub_server):
    body = post(hub_server, "detect", json={"appid": hub_server.appid, "image": "%%%not base64%%%"})
    assert body["code"] == -1102


def test_gif_is_refused_with_minus_1400(hub_server):
    gif = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,"
           b"\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
    assert newperson(hub_server, new_id(), gif)["code"] == -1400


def test_empty_image_is_minus_1300(hub_server):
    assert newperson(hub_server, new_id(), b"")["code"] == -1300
    body = post(hub_server, "verify", json={"appid": hub_server.appid, "person_id": "x"})
    assert body["code"] == -1300


@pytest.mark.parametrize("op,fields", [
    ("newperson", {"group_ids": ["g"]}),
    ("getinfo", {}),
    ("getpersonids", {}),
    ("delface", {"person_id": "someone"}),
    ("sync", {"since": 0}),
])
def test_missing_required_parameter_is_minus_1301(hub_server, op, fields):
    assert post(hub_server, op, json={"appid": hub_server.appid, **fields})["code"] == -1301


def test_body_without_appid_is_minus_1301(hub_server):
    assert post(hub_server, "getgroupids", json={})["code"] == -1301


def test_existing_person_is_minus_1302(hub_server, photos):
    ben = photos.train("Ben_Afflek", 5)
    pid = new_id()
    assert newperson(hub_server, pid, ben[0])["code"] == 0
    assert newperson(hub_server, pid, ben[1])["code"] == -1302


def test_unknown_person_is_minus_1303(hub_server, photos):
    ben = photos.train("Ben_Afflek", 5)
    for op in ("getinfo", "delperson", "getfaceids", "setinfo"):
        assert post(hub_server, op, json={"appid": hub_server.appid, "person_id": "nobody-here"})["code"] == -1303
    body = post(hub_server, "verify", files=sdk_files({"appid": hub_server.appid, "person_id": "nobody-here"},
                                                      {"image": ben[0]}))
    assert body["code"] == -1303


def test_too_long_identifier_is_minus_1304(hub_server, photos):
    ben = photos.train("Ben_Afflek", 5)
    assert newperson(hub_server, "x" * 129, ben[0])["code"] == -1304
    assert newperson(hub_server, new_id(), ben[0], group_ids=["g" * 200])["code"] == -1304


def test_unknown_face_is_minus_1305(hub_server, photos):
    ben = photos.train("Ben_Afflek", 5)
    assert post(hub_server, "getfaceinfo", json={"appid": hub_server.appid, "face_id": "123"})["code"] == -1305
    pid = new_id()
    newperson(hub_server, pid, ben[0])
    body = post(hub_server, "delface", json={"appid": hub_server.appid, "person_id": pid, "face_ids": ["123"]})
    assert body["code"] == -1305


def test_unknown_group_is_minus_1306(hub_server, photos):
    ben = photos.train("Ben_Afflek", 5)
    body = post(hub_server, "getpersonids", json={"appid": hub_server.appid, "group_id": "no-such-group"})
    assert body["code"] == -1306
    body = post(hub_server, "identify", files=sdk_files({"appid": hub_server.appid, "group_id": "no-such-group"},
                                                        {"image": ben[0]}))
    assert body["code"] == -1306


@pytest.mark.parametrize("bad", ["has space", "has/slash", "has\ttab", "has\nnewline"])
def test_illegal_characters_in_identifiers_are_minus_1313(hub_server, photos, bad):
    ben = photos.train("Ben_Afflek", 5)
    assert newperson(hub_server, bad, ben[0])["code"] == -1313
    assert post(hub_server, "getinfo", json={"appid": hub_server.appid, "person_id": bad})["code"] == -1313


def test_near_identical_face_is_minus_1312(hub_server, photos):
    ben = photos.train("Ben_Afflek", 5)
    pid = new_id()
    newperson(hub_server, pid, ben[0])
    body = post(hub_server, "addface", files=sdk_files({"appid": hub_server.appid, "person_id": pid},
                                                       {"images[0]": ben[0]}))
    assert body["code"] == -1312 and body["data"]["ret_codes"] == [-1312] and body["data"]["face_ids"] == [""]


def test_addface_reports_a_code_per_image(hub_server, photos):
    ben, nonface = photos.train("Ben_Afflek", 5), photos.nonface()
    pid = new_id()
    newperson(hub_server, pid, ben[0])
    body = post(hub_server, "addface", files=sdk_files(
        {"appid": hub_server.appid, "person_id": pid},
        {"images[0]": ben[1], "images[1]": nonface, "images[2]": b""},
    ))
    assert body["code"] == 0
    assert body["data"]["ret_codes"] == [0, -1101, -1300] and body["data"]["added"] == 1
    assert body["data"]["face_ids"][0].isdigit() and body["data"]["face_ids"][1:] == ["", ""]


@pytest.mark.parametrize("body", [
    {"person_id": "p", "group_ids": {"not": "a list"}},
    {"person_id": ["a", "list"], "group_ids": ["g"]},
    {"person_id": "p", "group_ids": [1.5]},
])
def test_wrongly_typed_parameter_is_21(hub_server, body):
    assert post(hub_server, "newperson", json={"appid": hub_server.appid, **body})["code"] == 21


@pytest.mark.parametrize("fields", [{"since": -1}, {"since": "abc"}, {"limit": 0}, {"limit": 1001}])
def test_sync_arguments_out_of_range_are_21(hub_server, fields):
    body = {"appid": hub_server.appid, "fingerprint": "x", "since": 0, **fields}
    assert post(hub_server, "sync", json=body)["code"] == 21


def test_unparseable_bodies_are_bad_request_3(hub_server):
    assert post(hub_server, "getgroupids", data=b"{not json", content_type="application/json")["code"] == 3
    assert post(hub_server, "getgroupids", data=b"[1,2]", content_type="application/json")["code"] == 3
    assert post(hub_server, "getgroupids", data=b"junk", content_type="multipart/form-data; boundary=xyz")["code"] == 3
    assert post(hub_server, "getgroupids", data=b"a=b", content_type="text/plain")["code"] == 3


def test_body_over_1_5_mb_is_refused_with_23(hub_server):
    big = b"\xff\xd8" + b"\x00" * (1_600_000)
    body = post(hub_server, "detect", files=sdk_files({"appid": hub_server.appid}, {"image": big}))
    assert body["_status"] == 200 and body["code"] == 23


def test_chunked_body_over_the_cap_is_refused_while_reading(hub_server):
    def chunks():
        payload = b'{"appid": "' + hub_server.appid.encode() + b'", "image": "'
        yield payload
        for _ in range(40):
            yield b"A" * 65536
        yield b'"}'

    body = post(hub_server, "detect", data=chunks(), content_type="application/json")
    assert body["code"] == 23


def test_count_limits_give_1309_1310_1311(tmp_path, photos, models_dir):
    ben, elton = photos.train("Ben_Afflek", 5), photos("Elton_John", "train_1")
    limits = {"faces_per_person": 2, "persons_per_group": 2, "groups_per_appid": 3}
    with start_hub(tmp_path, limits=limits) as hub:
        client = hub.client(timeout=30)
        client.newperson("a", ["g1"], ben[0])
        client.addface("a", [ben[1]])
        body = post(hub, "addface",
                    files=sdk_files({"appid": hub.appid, "person_id": "a"}, {"images[0]": ben[2]}))
        assert body["code"] == -1309
        client.newperson("b", ["g1"], elton)
        assert newperson(hub, "c", ben[3], group_ids=["g1"])["code"] == -1310
        client.addgroupids("a", ["g2", "g3"])
        assert newperson(hub, "d", ben[3], group_ids=["g4"])["code"] == -1311
        body = post(hub, "addgroupids", json={"appid": hub.appid, "person_id": "b", "group_ids": ["g5"]})
        assert body["code"] == -1311
        client.close()


def test_json_image_as_base64_is_accepted_where_docs_allow(hub_server, photos):
    ben = photos.train("Ben_Afflek", 5)
    body = post(hub_server, "detect", json={"appid": hub_server.appid, "bucket": "b",
                                            "image": base64.b64encode(ben[0]).decode()})
    assert body["code"] == 0 and len(body["data"]["face"]) >= 1


def test_body_that_never_finishes_is_abandoned_not_waited_for(tmp_path, models_dir):
    import socket

    from edge.core.signature import sign

    with start_hub(tmp_path, limits={"body_timeout_s": 1.0}) as hub:
        port = int(hub.url.rsplit(":", 1)[1])
        header = sign(hub.appid, hub.secret_id, hub.secret_key)
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(f"POST /face/getgroupids HTTP/1.1\r\nHost: x\r\nAuthorization: {header}\r\n"
                         "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"appid\"".encode())
            reply = b""
            while b"}" not in reply.split(b"\r\n\r\n", 1)[-1]:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
        assert b'"code":3' in reply.replace(b" ", b"")


def test_addface_urls_are_limited(hub_server):
    body = post(hub_server, "addface", json={"appid": hub_server.appid, "person_id": "x",
                                             "urls": [f"http://example.invalid/{i}.jpg" for i in range(21)]})
    assert body["code"] == 21


@pytest.mark.parametrize("value", ["²", "-²", "٣", "--5", "-", "+5", "5_0"])
def test_an_integer_in_other_scripts_digits_is_21_not_an_internal_error(hub_server, value):
    """'²'.isdigit() is True but int('²') raises: a `since` of '²' answered 213 (internal error,
    a traceback in the hub's log) where any other bad integer answers 21; so did '--5' (every
    leading '-' was stripped before the digits were checked)."""
    answer = post(hub_server, "sync", json={"appid": hub_server.appid, "since": value, "fingerprint": "x"})
    assert answer["code"] == 21 and "integer" in answer["message"], answer


def test_a_name_with_a_nul_is_refused_not_a_storage_failure(hub_server):
    """A NUL made PostgreSQL refuse the write: the hub answered -1200 and reported its storage
    failing until the next good write."""
    answer = post(hub_server, "setinfo", json={"appid": hub_server.appid, "person_id": "nobody-here",
                                               "person_name": "ann\x00"})
    assert answer["code"] == errors.ILLEGAL_CHARACTERS, answer  # before the person is looked up
    health = hub_server.app.state.service.health()
    assert health["store"]["ok"] is True


def test_a_rule_document_with_a_lone_surrogate_is_malformed_not_an_internal_error(hub_server):
    from edge.core import access_rules as ar

    doc = {"format": 1, "timezone": "UTC", "groups": [], "doors": [{"id": "front", "name": "\ud800"}],
           "schedules": {}, "access_levels": []}
    answer = post(hub_server, "setrules", json={"appid": hub_server.appid, "rules": json.dumps(doc)})
    assert answer["code"] in (ar.RULES_MALFORMED,), answer


def test_more_images_than_a_person_can_hold_is_refused_before_any_is_decoded(hub_server):
    """JSON took any number of images (only multipart was capped): 30,838 copies of a 36-byte
    image whose header says 5400x5400 fit one 1.5 MB body, each a quarter of a second of
    detection, hours of CPU for one request. At most 20, as urls."""
    tiny = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(28)).decode()
    answer = post(hub_server, "addface", json={"appid": hub_server.appid, "person_id": "nobody-here",
                                               "images": [tiny] * 21})
    assert answer["code"] == 21 and "at most 20" in answer["message"], answer
