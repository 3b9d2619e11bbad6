"""Authorization and rate limiting through a real hub: each failure answers its code, HTTP 200."""

from __future__ import annotations

import time

from edge.core.signature import sign, sign_plain
from tests.support.hub import post, start_hub


def call(hub, authorization, appid=None):
    return post(hub, "getgroupids", json={"appid": appid or hub.appid, "bucket": ""}, authorization=authorization)


def test_signed_request_is_accepted(hub_server):
    body = call(hub_server, None)
    assert body["code"] == 0 and body["message"] == "OK" and isinstance(body["data"]["group_ids"], list)


def test_missing_signature_is_4(hub_server):
    body = call(hub_server, "")
    assert body["_status"] == 200 and body["code"] == 4


def test_malformed_signature_is_5(hub_server):
    assert call(hub_server, "this is not base64")["code"] == 5


def test_body_appid_other_than_the_signed_one_is_6(hub_server):
    header = sign(hub_server.other_appid, hub_server.other_secret_id, hub_server.other_secret_key)
    assert call(hub_server, header, appid=hub_server.appid)["code"] == 6


def test_expired_signature_is_9(hub_server):
    now = int(time.time())
    header = sign(hub_server.appid, hub_server.secret_id, hub_server.secret_key, now=now - 7200, expiry=now - 3600)
    assert call(hub_server, header)["code"] == 9


def test_unknown_appid_is_10(hub_server):
    assert call(hub_server, sign("424242", hub_server.secret_id, hub_server.secret_key), appid="424242")["code"] == 10


def test_unknown_secret_id_is_11(hub_server):
    assert call(hub_server, sign(hub_server.appid, "AKIDunknown", hub_server.secret_key))["code"] == 11


def test_secret_id_of_another_appid_is_12(hub_server):
    header = sign(hub_server.appid, hub_server.other_secret_id, hub_server.other_secret_key)
    assert call(hub_server, header)["code"] == 12


def test_replayed_single_use_signature_is_13(hub_server):
    header = sign(hub_server.appid, hub_server.secret_id, hub_server.secret_key, expiry=0, fileid="/face/getgroupids")
    assert call(hub_server, header)["code"] == 0
    assert call(hub_server, header)["code"] == 13


def test_wrong_secret_key_is_14(hub_server):
    assert call(hub_server, sign(hub_server.appid, hub_server.secret_id, "not-the-key"))["code"] == 14


def test_sdk_field_orders_are_accepted(hub_server):
    now = int(time.time())
    for plain in (f"a={hub_server.appid}&b=&k={hub_server.secret_id}&t={now}&e={now + 300}",
                  f"a={hub_server.appid}&k={hub_server.secret_id}&e={now + 300}&t={now}&r=7&u=0&f="):
        assert call(hub_server, sign_plain(hub_server.secret_key, plain.encode()))["code"] == 0


def test_requests_beyond_the_rate_of_an_appid_are_15(tmp_path, models_dir):
    with start_hub(tmp_path, limits={"rate_per_s": 0.5, "burst": 3}) as hub:
        codes = [call(hub, None)["code"] for _ in range(5)]
        assert codes[:3] == [0, 0, 0] and codes[3:] == [15, 15]
        # the other appid has its own bucket
        header = sign(hub.other_appid, hub.other_secret_id, hub.other_secret_key)
        assert call(hub, header, appid=hub.other_appid)["code"] == 0


def _edge_like_app(service_cls):
    from edge.api.app import create_app
    from edge.core.signature import Credential

    return create_app(service_cls(), [Credential("1", "AKIDedge", "key")])


def test_operations_a_role_does_not_serve_answer_24(tmp_path):
    """The edge daemon reuses the layer with a service implementing a few ops only."""
    from edge.api.service import FaceService
    from tests.conftest import free_port
    from tests.support.hub import HubServer, serve_app

    class OnlyVerify(FaceService):
        role = "edge"

        def verify(self, appid, person_id, image):
            return {"session_id": "s", "confidence": 80.0, "ismatch": True}

    port = free_port()
    with serve_app(_edge_like_app(OnlyVerify), port):
        hub = HubServer(f"http://127.0.0.1:{port}", "1", "AKIDedge", "key", tmp_path)
        body = {"appid": "1", "person_id": "p", "group_ids": ["g"], "url": "http://x/"}
        assert post(hub, "newperson", json=body)["code"] == 24
        body = post(hub, "verify", files=[("appid", ("appid", "1")), ("person_id", ("person_id", "p")),
                                          ("image", ("a.jpg", b"jpegbytes"))])
        assert body["code"] == 0 and body["data"]["ismatch"] is True


def test_a_bug_in_a_service_answers_213_in_an_http_200_envelope(tmp_path):
    """JSON can still be produced, so the Java SDK (which throws on non-2xx) gets the code."""
    from edge.api.service import FaceService
    from tests.conftest import free_port
    from tests.support.hub import HubServer, serve_app

    class Broken(FaceService):
        role = "edge"

        def verify(self, appid, person_id, image):
            raise RuntimeError("a bug")

    port = free_port()
    with serve_app(_edge_like_app(Broken), port):
        hub = HubServer(f"http://127.0.0.1:{port}", "1", "AKIDedge", "key", tmp_path)
        body = post(hub, "verify", files=[("appid", ("appid", "1")), ("person_id", ("person_id", "p")),
                                          ("image", ("a.jpg", b"jpegbytes"))])
        assert body["_status"] == 200
        assert body["code"] == 213 and body["message"] == "internal error"
