"""Requests byte-shaped as the vendor's published SDKs of that era build them, sent to the real
hub (real models, real photos), and each answer read the way that SDK reads it.

Where each shape comes from (read, not copied; the plaintext recipes and part layouts below
are written from the description):

- PY2: tencentyun/image-python-sdk-v2.0, qcloud_image/api.py (python-requests; `files=` dict
  whose text values become filename-bearing parts named after the key, `group_ids[i]` and
  `images[i]` indexed parts, a raw buffer as `image` with filename "image", JSON bodies via
  `data=json.dumps(...)` + `Content-Type: application/json`, a `Host` header of the original
  service) and its Auth.get_sign (a,b,k,e,t,r,f with e = now + 30 s; the header value is the
  *bytes* of base64(...).rstrip()). Responses: `response.json()` whatever the HTTP status.
- JAVA: tencentyun/image-java-sdk-v2.0, op/DetectionOp.java, http/DefaultImageHttpClient.java,
  sign/Sign.java (okhttp: text parts WITHOUT filename and with a per-part Content-Length, image
  parts without filename typed image/jpg, unset optional text sent as the string "null", JSON as
  `application/json; charset=utf-8`, `mode` a JSON number, `session_id` passed through on
  add/delgroupids; plaintext a,b,k,t,e,r,f with t BEFORE e; a non-2xx answer throws instead of
  reading `code`; ClientConfig: signatures valid 300 s, Host service.image.myqcloud.com).
- CPP: tencentyun/image-cpp-sdk-v2.0, src/Auth.cpp, src/util/HttpSender.cpp,
  include/request/FaceManagerReq.h (libcurl: `Host: service.image.myqcloud.com`, `Expect:
  100-continue` on form posts, buffer parts whose filename is the field name typed
  application/octet-stream, text parts without filename, JSON written with a trailing newline;
  plaintext a,b,k,t,e only: no r, no f).
- NODE: TencentCloudBase/image-node-sdk, libs/BaseService.js (lower-case `host` of the original
  service, `appid` as given by the caller, so possibly a JSON number; plaintext a,k,e,t,r,u,f with
  u=0, e = now + 100, r of 5 digits).
- PHP: tencentyun/image-php-sdk, Tencentyun/Auth.php (a,k,e,t,r,u,f without b); heitaoa/
  image-python-sdk, python3/tencentyun/auth.py (a,b,k,e,t,r,u,f and the porn-detect recipe
  a,b,k,t,e,l=<url>: no r, no f, e = now + 10).
"""

from __future__ import annotations

import base64
import json
import random
import socket
import time
import urllib.parse
import uuid
from http.client import HTTPResponse

import pytest
import requests

from edge.core.signature import sign_plain

# The Host headers the SDKs put on every call (the original service, long switched off).
PY2_HOST = "recognition.image.myqcloud.com"
CPP_HOST = JAVA_HOST = "service.image.myqcloud.com"
BUCKET = "legacybucket"


# --- the SDKs' signature recipes ------------------------------------------------------------------
def sig_py2(hub, now: int | None = None, howlong: int = 30) -> bytes:
    now = int(time.time()) if now is None else now
    plain = (f"a={hub.appid}&b={BUCKET}&k={hub.secret_id}&e={now + howlong}&t={now}"
             f"&r={random.randint(0, 999_999_999)}&f=")
    return sign_plain(hub.secret_key, plain.encode()).encode().rstrip()


def sig_java(hub, expired: int = 300) -> str:  # ClientConfig DEFAULT_SIGN_EXPIRED
    now = int(time.time())
    rand = random.randint(0, 2**31 - 1)
    plain = f"a={int(hub.appid)}&b={BUCKET}&k={hub.secret_id}&t={now}&e={now + expired}&r={rand}&f="
    return sign_plain(hub.secret_key, plain.encode())


def sig_cpp(hub, expired: int = 3600) -> str:
    now = int(time.time())
    plain = f"a={int(hub.appid)}&b={BUCKET}&k={hub.secret_id}&t={now}&e={now + expired}"
    return sign_plain(hub.secret_key, plain.encode())


def sig_node(hub) -> str:
    now = int(time.time())
    plain = f"a={hub.appid}&k={hub.secret_id}&e={now + 100}&t={now}&r={random.randint(10000, 99999)}&u=0&f="
    return sign_plain(hub.secret_key, plain.encode())


def sig_php(hub) -> str:
    now = int(time.time())
    plain = f"a={hub.appid}&k={hub.secret_id}&e={now + 600}&t={now}&r={random.randint(0, 2**31 - 1)}&u=0&f="
    return sign_plain(hub.secret_key, plain.encode())


def sig_heitaoa_v2(hub) -> str:
    now = int(time.time())
    plain = (f"a={hub.appid}&b={BUCKET}&k={hub.secret_id}&e={now + 600}&t={now}"
             f"&r={random.randint(0, 999_999_999)}&u=0&f=")
    return sign_plain(hub.secret_key, plain.encode())


def sig_heitaoa_porn(hub, url: str) -> str:
    now = int(time.time())
    plain = f"a={hub.appid}&b={BUCKET}&k={hub.secret_id}&t={now}&e={now + 10}&" + urllib.parse.urlencode({"l": url})
    return sign_plain(hub.secret_key, plain.encode())


# --- senders --------------------------------------------------------------------------------------
def py2_headers(hub) -> dict:
    return {"Host": PY2_HOST, "Authorization": sig_py2(hub), "User-Agent": f"qcloud-python-sdk-{hub.appid}"}


def py2_json(hub, op: str, fields: dict) -> dict:
    """face_delperson & co.: data=json.dumps(files) with an explicit JSON Content-Type."""
    body = {"appid": hub.appid, "bucket": BUCKET, **fields}
    resp = requests.post(f"{hub.url}/face/{op}", headers={**py2_headers(hub), "Content-Type": "application/json"},
                         data=json.dumps(body), timeout=60)
    return sdk_result(resp)


def py2_files(hub, op: str, files: dict) -> dict:
    """face_newperson & co. with a CIFile / CIBuffer: requests `files=` of the whole dict."""
    resp = requests.post(f"{hub.url}/face/{op}", headers=py2_headers(hub),
                         files={"appid": hub.appid, "bucket": BUCKET, **files}, timeout=60)
    return sdk_result(resp)


def sdk_result(resp: requests.Response) -> dict:
    """What the Python SDK's Http.post hands its caller: the JSON body plus `httpcode`."""
    result = resp.json()
    result["httpcode"] = resp.status_code
    return result


def multipart(parts: list[tuple[list[str], bytes]], boundary: str) -> bytes:
    """A multipart body from (header lines, content) pairs, so each SDK's part headers are exact."""
    out = b""
    for headers, content in parts:
        head = "".join(h + "\r\n" for h in headers)
        out += f"--{boundary}\r\n".encode() + head.encode() + b"\r\n" + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def okhttp_text(name: str, value: str) -> tuple[list[str], bytes]:
    data = value.encode()
    return [f'Content-Disposition: form-data; name="{name}"', f"Content-Length: {len(data)}"], data


def okhttp_image(name: str, data: bytes) -> tuple[list[str], bytes]:
    return [f'Content-Disposition: form-data; name="{name}"', "Content-Type: image/jpg",
            f"Content-Length: {len(data)}"], data


def curl_text(name: str, value: str) -> tuple[list[str], bytes]:
    return [f'Content-Disposition: form-data; name="{name}"'], value.encode()


def curl_buffer(name: str, data: bytes) -> tuple[list[str], bytes]:
    return [f'Content-Disposition: form-data; name="{name}"; filename="{name}"',
            "Content-Type: application/octet-stream"], data


def raw_post(hub, op: str, headers: list[tuple[str, str]], body: bytes, *, expect_continue: bool = False):
    """(HTTP status, parsed JSON) of a request written byte for byte on a socket.

    With `expect_continue`, the body is held back until the server says `100 Continue`, as libcurl
    does (it would otherwise wait a second and send anyway; the hub must not stall either way).
    """
    host, port = hub.url.rsplit("/", 1)[-1].split(":")
    head = f"POST /face/{op} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    head += f"Content-Length: {len(body)}\r\n"
    if expect_continue:
        head += "Expect: 100-continue\r\n"
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(head.encode() + b"\r\n")
        if expect_continue:
            interim = b""
            while b"\r\n\r\n" not in interim:
                chunk = sock.recv(1)
                assert chunk, "connection closed before 100 Continue"
                interim += chunk
            assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(body)
        resp = HTTPResponse(sock)
        resp.begin()
        return resp.status, json.loads(resp.read())


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- Python SDK (PY2) -----------------------------------------------------------------------------
def test_python_sdk_enrols_from_a_file_with_every_text_part_filename_bearing(hub_server, photos):
    pid, groups = uid("py2"), [uid("g"), uid("g")]
    path = str(photos.path("Ben_Afflek", "train_1"))
    with open(path, "rb") as fh:
        files = {"person_id": pid, "person_name": "本·阿弗莱克", "tag": "staff",
                 "group_ids[0]": groups[0], "group_ids[1]": groups[1],
                 "image": (urllib.parse.quote(path), fh)}
        result = py2_files(hub_server, "newperson", files)
    assert result["code"] == 0 and result["httpcode"] == 200, result
    data = result["data"]
    assert data["person_id"] == pid and data["suc_group"] == 2 and data["suc_face"] == 1
    assert data["group_ids"] == groups and isinstance(data["face_id"], str) and data["face_id"]

    info = py2_json(hub_server, "getinfo", {"person_id": pid})
    assert info["code"] == 0
    assert info["data"]["person_name"] == "本·阿弗莱克" and info["data"]["tag"] == "staff"
    assert sorted(info["data"]["group_ids"]) == sorted(groups)
    assert py2_json(hub_server, "getpersonids", {"group_id": groups[1]})["data"]["person_ids"] == [pid]


def test_python_sdk_verify_from_a_buffer_and_a_file_reads_ismatch_and_confidence(hub_server, photos):
    ben1 = photos("Ben_Afflek", "train_1")
    ben_val = photos("Ben_Afflek", "val_1")
    madonna_path = photos.path("Madonna", "train_1")
    pid = uid("py2v")
    assert py2_files(hub_server, "newperson", {"person_id": pid, "group_ids[0]": uid("g"),
                                               "image": ben1})["code"] == 0
    same = py2_files(hub_server, "verify", {"person_id": pid, "image": ben_val})
    assert same["code"] == 0 and same["data"]["ismatch"] is True
    assert isinstance(same["data"]["confidence"], float) and same["data"]["session_id"]
    with open(madonna_path, "rb") as fh:
        other = py2_files(hub_server, "verify", {"person_id": pid,
                                                 "image": (urllib.parse.quote(str(madonna_path)), fh)})
    assert other["code"] == 0 and other["data"]["ismatch"] is False
    assert other["data"]["confidence"] < same["data"]["confidence"]


def test_python_sdk_addface_buffers_then_delface_and_getfaceids_in_json(hub_server, photos):
    ben1, ben2, ben3 = photos("Ben_Afflek", "train_1"), photos("Ben_Afflek", "train_2"), photos("Ben_Afflek", "train_3")
    pid = uid("py2a")
    assert py2_files(hub_server, "newperson", {"person_id": pid, "group_ids[0]": uid("g"),
                                               "image": ben1})["code"] == 0
    added = py2_files(hub_server, "addface", {"person_id": pid, "tag": "more",
                                              "images[0]": ben2, "images[1]": ben3})
    assert added["code"] == 0, added
    assert added["data"]["added"] == 2 and added["data"]["ret_codes"] == [0, 0]
    new_ids = added["data"]["face_ids"]
    assert py2_json(hub_server, "getfaceids", {"person_id": pid})["data"]["face_ids"].count(new_ids[0]) == 1
    gone = py2_json(hub_server, "delface", {"person_id": pid, "face_ids": [new_ids[0]]})
    assert gone["code"] == 0 and gone["data"]["deleted"] == 1 and gone["data"]["face_ids"] == [new_ids[0]]
    assert new_ids[0] not in py2_json(hub_server, "getfaceids", {"person_id": pid})["data"]["face_ids"]
    assert py2_json(hub_server, "delperson", {"person_id": pid})["data"]["deleted"] == 1


def test_python_sdk_identify_compare_and_detect_multipart(hub_server, photos):
    ben1 = photos("Ben_Afflek", "train_1")
    ben_val = photos("Ben_Afflek", "val_1")
    madonna_val = photos("Madonna", "val_1")
    group = uid("py2i")
    pid = uid("py2i")
    assert py2_files(hub_server, "newperson", {"person_id": pid, "group_ids[0]": group,
                                               "image": ben1})["code"] == 0
    found = py2_files(hub_server, "identify", {"group_id": group, "image": ben_val})
    assert found["code"] == 0 and found["data"]["candidates"][0]["person_id"] == pid

    same = py2_files(hub_server, "compare", {"imageA": ben1, "imageB": ben_val})
    diff = py2_files(hub_server, "compare", {"imageA": ben1, "imageB": madonna_val})
    assert same["code"] == 0 and diff["code"] == 0
    assert same["data"]["similarity"] > diff["data"]["similarity"]
    assert "fail_flag" not in same["data"]

    detected = py2_files(hub_server, "detect", {"image": ben_val, "mode": "1"})
    assert detected["code"] == 0 and len(detected["data"]["face"]) == 1
    assert detected["data"]["image_width"] > 0


def test_python_sdk_setinfo_and_group_ids_in_json(hub_server, photos):
    ben1 = photos("Ben_Afflek", "train_1")
    pid, g1, g2 = uid("py2s"), uid("g"), uid("g")
    fields = {"person_id": pid, "group_ids[0]": g1, "image": ben1}
    assert py2_files(hub_server, "newperson", fields)["code"] == 0
    assert py2_json(hub_server, "setinfo", {"person_id": pid, "person_name": "Ben", "tag": "vip"})["code"] == 0
    assert py2_json(hub_server, "addgroupids", {"person_id": pid, "group_ids": [g2]})["data"]["added"] == 1
    assert g2 in py2_json(hub_server, "getgroupids", {})["data"]["group_ids"]
    assert py2_json(hub_server, "delgroupids", {"person_id": pid, "group_ids": [g1]})["data"]["deleted"] == 1
    info = py2_json(hub_server, "getinfo", {"person_id": pid})["data"]
    assert info["person_name"] == "Ben" and info["tag"] == "vip" and info["group_ids"] == [g2]
    face = py2_json(hub_server, "getfaceinfo", {"face_id": info["face_ids"][0]})["data"]["face_info"]
    assert face["face_id"] == info["face_ids"][0] and face["width"] > 0


def test_base64_image_in_json_as_the_sdks_tag_detect_sends_it(hub_server, photos):
    # PY2 tag_detect / JAVA tagDetect put the picture into JSON as base64 under `image`.
    ben1, ben_val = photos("Ben_Afflek", "train_1"), photos("Ben_Afflek", "val_1")
    pid = uid("b64")
    body = {"appid": hub_server.appid, "bucket": BUCKET, "person_id": pid, "group_ids": [uid("g")],
            "image": base64.b64encode(ben1).decode()}
    resp = requests.post(f"{hub_server.url}/face/newperson", data=json.dumps(body),
                         headers={**py2_headers(hub_server), "Content-Type": "application/json"}, timeout=60)
    assert sdk_result(resp)["code"] == 0
    body = {"appid": hub_server.appid, "bucket": BUCKET, "person_id": pid,
            "image": base64.b64encode(ben_val).decode()}
    resp = requests.post(f"{hub_server.url}/face/verify", data=json.dumps(body),
                         headers={**py2_headers(hub_server), "Content-Type": "application/json"}, timeout=60)
    assert sdk_result(resp)["data"]["ismatch"] is True


def test_python_sdk_errors_come_back_as_envelopes_it_can_read(hub_server, photos):
    missing = py2_json(hub_server, "getinfo", {"person_id": uid("nobody")})
    assert missing["code"] == -1303 and missing["httpcode"] == 200 and isinstance(missing["message"], str)
    resp = requests.post(f"{hub_server.url}/face/getgroupids",
                         headers={"Host": PY2_HOST, "Authorization": sig_py2(hub_server, now=int(time.time()) - 120),
                                  "Content-Type": "application/json"},
                         data=json.dumps({"appid": hub_server.appid, "bucket": BUCKET}), timeout=30)
    assert sdk_result(resp)["code"] == 9 and resp.status_code == 200  # its 30 s signature expired


# --- Java SDK -------------------------------------------------------------------------------------
def java_headers(hub, body_type: str) -> list[tuple[str, str]]:
    return [("Host", JAVA_HOST), ("Authorization", sig_java(hub)),
            ("User-Agent", "qcloud-java-sdk"), ("Content-Type", body_type), ("Connection", "Keep-Alive"),
            ("Accept-Encoding", "gzip")]


def java_json(hub, op: str, params: dict):
    body = json.dumps({"appid": hub.appid, "bucket": BUCKET, **params}, separators=(",", ":")).encode()
    return raw_post(hub, op, java_headers(hub, "application/json; charset=utf-8"), body)


def test_java_sdk_multipart_without_filenames_and_null_optionals(hub_server, photos):
    ben1, ben_val = photos("Ben_Afflek", "train_1"), photos("Ben_Afflek", "val_1")
    pid, group = uid("java"), uid("g")
    boundary = str(uuid.uuid4())
    body = multipart([
        okhttp_text("appid", hub_server.appid), okhttp_text("bucket", BUCKET), okhttp_text("person_id", pid),
        okhttp_text("person_name", "null"), okhttp_text("tag", "null"), okhttp_text("group_ids[0]", group),
        okhttp_image("image", ben1),
    ], boundary)
    headers = java_headers(hub_server, f"multipart/form-data; boundary={boundary}")
    status, result = raw_post(hub_server, "newperson", headers, body)
    assert status == 200 and result["code"] == 0, result  # the SDK throws on any non-2xx
    assert result["data"]["person_id"] == pid and result["data"]["group_ids"] == [group]

    body = multipart([okhttp_text("appid", hub_server.appid), okhttp_text("bucket", BUCKET),
                      okhttp_text("person_id", pid), okhttp_image("image", ben_val)], boundary)
    headers = java_headers(hub_server, f"multipart/form-data; boundary={boundary}")
    status, result = raw_post(hub_server, "verify", headers, body)
    assert status == 200 and result["data"]["ismatch"] is True


def test_java_sdk_json_calls_with_numeric_mode_and_passed_through_session_id(hub_server, photos):
    ben1, ben_val = photos("Ben_Afflek", "train_1"), photos("Ben_Afflek", "val_1")
    pid, g1, g2 = uid("javaj"), uid("g"), uid("g")
    assert java_json(hub_server, "newperson", {"person_id": pid, "group_ids": [g1],
                                               "image": base64.b64encode(ben1).decode()})[1]["code"] == 0
    status, result = java_json(hub_server, "addgroupids", {"person_id": pid, "group_ids": [g2], "session_id": "abc"})
    assert status == 200 and result["code"] == 0 and result["data"]["group_ids"] == [g2]
    status, result = java_json(hub_server, "delgroupids", {"person_id": pid, "group_ids": [g2], "session_id": "abc"})
    assert status == 200 and result["data"]["deleted"] == 1
    status, result = java_json(hub_server, "detect", {"mode": 0, "image": base64.b64encode(ben_val).decode()})
    assert status == 200 and result["code"] == 0 and len(result["data"]["face"]) >= 1


def test_java_sdk_sees_http_200_for_business_and_auth_errors(hub_server):
    status, result = java_json(hub_server, "getinfo", {"person_id": uid("nobody")})
    assert (status, result["code"]) == (200, -1303)
    headers = [h for h in java_headers(hub_server, "application/json") if h[0] != "Authorization"]
    forged = ("Authorization", sig_java(hub_server)[:-8] + "AAAAAAA=")
    status, result = raw_post(hub_server, "getgroupids", headers + [forged],
                              json.dumps({"appid": hub_server.appid}).encode())
    assert status == 200 and result["code"] in (5, 14)
    status, result = raw_post(hub_server, "getgroupids", headers, json.dumps({"appid": hub_server.appid}).encode())
    assert (status, result["code"]) == (200, 4)


# --- C++ SDK --------------------------------------------------------------------------------------
def cpp_headers(hub, content_type: str) -> list[tuple[str, str]]:
    return [("Accept", "*/*"), ("Host", CPP_HOST), ("Connection", "Keep-Alive"), ("User-Agent", "image-cpp-sdk"),
            ("Authorization", sig_cpp(hub)), ("Content-Type", content_type)]


def test_cpp_sdk_form_post_with_expect_continue_and_buffer_filenames(hub_server, photos):
    ben1, ben2 = photos("Ben_Afflek", "train_1"), photos("Ben_Afflek", "train_2")
    pid, group = uid("cpp"), uid("g")
    boundary = "------------------------" + uuid.uuid4().hex[:16]
    parts = [curl_text("appid", hub_server.appid), curl_text("bucket", BUCKET), curl_text("group_ids[0]", group),
             curl_buffer("image", ben1), curl_text("person_id", pid)]
    headers = cpp_headers(hub_server, f"multipart/form-data; boundary={boundary}")
    status, result = raw_post(hub_server, "newperson", headers, multipart(parts, boundary), expect_continue=True)
    assert status == 200 and result["code"] == 0, result

    parts = [curl_text("appid", hub_server.appid), curl_text("bucket", BUCKET),
             curl_buffer("images[0]", ben2), curl_text("person_id", pid)]
    headers = cpp_headers(hub_server, f"multipart/form-data; boundary={boundary}")
    status, result = raw_post(hub_server, "addface", headers, multipart(parts, boundary), expect_continue=True)
    assert status == 200 and result["data"]["added"] == 1


def test_cpp_sdk_json_with_trailing_newline_and_short_signature(hub_server, photos):
    ben1 = photos("Ben_Afflek", "train_1")
    pid = uid("cppj")
    assert raw_post(hub_server, "newperson", cpp_headers(hub_server, "application/json"),
                    (json.dumps({"appid": hub_server.appid, "bucket": BUCKET, "person_id": pid, "group_ids": [uid("g")],
                                 "image": base64.b64encode(ben1).decode()}) + "\n").encode())[1]["code"] == 0
    body = (json.dumps({"person_id": pid, "appid": hub_server.appid, "bucket": BUCKET}) + "\n").encode()
    status, result = raw_post(hub_server, "getinfo", cpp_headers(hub_server, "application/json"), body)
    assert status == 200 and result["code"] == 0 and result["data"]["person_id"] == pid


# --- Node SDK -------------------------------------------------------------------------------------
def test_node_sdk_numeric_appid_lowercase_original_host_and_u_field(hub_server, photos):
    ben1, ben_val = photos("Ben_Afflek", "train_1"), photos("Ben_Afflek", "val_1")
    pid = uid("node")
    headers = [("host", "recognition.image.myqcloud.com"), ("content-type", "application/json"),
               ("authorization", sig_node(hub_server))]
    body = {"person_id": pid, "group_ids": [uid("g")], "image": base64.b64encode(ben1).decode(),
            "appid": int(hub_server.appid)}
    status, result = raw_post(hub_server, "newperson", headers, json.dumps(body).encode())
    assert status == 200 and result["code"] == 0, result
    headers[2] = ("authorization", sig_node(hub_server))
    body = {"person_id": pid, "image": base64.b64encode(ben_val).decode(), "appid": int(hub_server.appid)}
    status, result = raw_post(hub_server, "verify", headers, json.dumps(body).encode())
    assert status == 200 and result["data"]["ismatch"] is True


# --- every signature recipe -----------------------------------------------------------------------
@pytest.mark.parametrize("recipe", ["py2", "java", "cpp", "node", "php", "heitaoa_v2", "heitaoa_porn"])
def test_every_sdk_signature_recipe_is_accepted(hub_server, recipe):
    header = {
        "py2": lambda h: sig_py2(h).decode(), "java": sig_java, "cpp": sig_cpp, "node": sig_node, "php": sig_php,
        "heitaoa_v2": sig_heitaoa_v2, "heitaoa_porn": lambda h: sig_heitaoa_porn(h, "http://example.com/a.jpg"),
    }[recipe](hub_server)
    resp = requests.post(f"{hub_server.url}/face/getgroupids", headers={"Authorization": header},
                         json={"appid": hub_server.appid, "bucket": BUCKET}, timeout=30)
    assert resp.status_code == 200 and resp.json()["code"] == 0, resp.json()


def test_java_sdk_calling_an_endpoint_the_hub_lacks_reads_a_code_not_an_http_error(hub_server, photos):
    # JAVA faceShape posts /face/shape (not an endpoint of the API); a non-2xx answer would make the SDK
    # throw "Unexpected code" instead of handing its caller the envelope.
    ben_val = photos("Ben_Afflek", "val_1")
    status, result = java_json(hub_server, "shape", {"mode": 0, "image": base64.b64encode(ben_val).decode()})
    assert status == 200 and result["code"] == 21 and "/face/shape" in result["message"]


def test_json_null_fields_count_as_not_given(hub_server, photos):
    # NODE merges the caller's `data` object into the JSON body as is, so an unset option arrives as null.
    ben1 = photos("Ben_Afflek", "train_1")
    pid = uid("null")
    headers = [("host", "recognition.image.myqcloud.com"), ("content-type", "application/json"),
               ("authorization", sig_node(hub_server))]
    body = {"person_id": pid, "group_ids": [uid("g")], "person_name": None, "tag": None,
            "image": base64.b64encode(ben1).decode(), "appid": hub_server.appid}
    status, result = raw_post(hub_server, "newperson", headers, json.dumps(body).encode())
    assert status == 200 and result["code"] == 0, result
    info = py2_json(hub_server, "getinfo", {"person_id": pid})["data"]
    assert info["person_name"] == "" and info["tag"] == ""
    headers[2] = ("authorization", sig_node(hub_server))
    body = json.dumps({"person_id": None, "appid": hub_server.appid}).encode()
    status, result = raw_post(hub_server, "getinfo", headers, body)
    assert result["code"] == -1301  # a required field given as null is a missing one


# --- url inputs (CIUrl / CIUrls / SetUrl): a real loopback image server, allow-listed ---------------
@pytest.fixture(scope="module")
def url_hub(tmp_path_factory, photos, models_dir):
    from tests.support.hub import start_hub
    from tests.support.loopback import QuietHandler, serving

    blobs = {"/ben1.jpg": photos("Ben_Afflek", "train_1"), "/ben2.jpg": photos("Ben_Afflek", "train_2"),
             "/ben_val.jpg": photos("Ben_Afflek", "val_1"), "/madonna.jpg": photos("Madonna", "train_1")}

    class Images(QuietHandler):
        def do_GET(self):  # noqa: N802
            blob = blobs.get(self.path)
            self.reply(200 if blob else 404, blob or b"")

    with serving(Images) as server:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        url_fetch = {"allow": [f"127.0.0.1/32:{server.server_address[1]}"], "total_timeout_s": 5.0}
        with start_hub(tmp_path_factory.mktemp("urlhub"), url_fetch=url_fetch) as hub:
            yield hub, base


def test_python_sdk_url_inputs_in_json_and_a_url_beside_a_file_in_multipart(url_hub, photos):
    ben1 = photos("Ben_Afflek", "train_1")
    hub, base = url_hub
    pid, group = uid("url"), uid("g")
    made = py2_json(hub, "newperson", {"person_id": pid, "group_ids": [group], "url": f"{base}/ben1.jpg"})
    assert made["code"] == 0 and made["data"]["group_ids"] == [group], made
    added = py2_json(hub, "addface", {"person_id": pid, "urls": [f"{base}/ben2.jpg", f"{base}/missing.jpg"]})
    assert added["code"] == 0 and added["data"]["ret_codes"] == [0, -1403] and added["data"]["face_ids"][1] == ""
    assert py2_json(hub, "verify", {"person_id": pid, "url": f"{base}/ben_val.jpg"})["data"]["ismatch"] is True
    identified = py2_json(hub, "identify", {"group_id": group, "url": f"{base}/ben_val.jpg"})
    assert identified["data"]["candidates"][0]["person_id"] == pid
    assert len(py2_json(hub, "detect", {"mode": 1, "url": f"{base}/ben_val.jpg"})["data"]["face"]) == 1
    # face_compare(CIUrl, CIBuffer): urlA as a filename-bearing text part, imageB as a file part
    mixed = py2_files(hub, "compare", {"urlA": f"{base}/ben_val.jpg", "imageB": ben1})
    other = py2_files(hub, "compare", {"urlA": f"{base}/madonna.jpg", "imageB": ben1})
    assert mixed["code"] == 0 and other["code"] == 0
    assert mixed["data"]["similarity"] > other["data"]["similarity"]
    both = py2_json(hub, "compare", {"urlA": f"{base}/ben_val.jpg", "urlB": f"{base}/ben1.jpg"})
    assert both["data"]["similarity"] == pytest.approx(mixed["data"]["similarity"], abs=0.01)


def test_cpp_and_java_sdk_url_shapes(url_hub):
    hub, base = url_hub
    pid = uid("urlcpp")
    body = json.dumps({"group_ids": [uid("g")], "url": f"{base}/ben1.jpg", "person_id": pid,
                       "appid": hub.appid, "bucket": BUCKET}) + "\n"
    status, result = raw_post(hub, "newperson", cpp_headers(hub, "application/json"), body.encode())
    assert status == 200 and result["code"] == 0, result
    status, result = java_json(hub, "addface", {"person_id": pid, "tag": "null", "urls": [f"{base}/ben2.jpg"]})
    assert status == 200 and result["data"]["added"] == 1
    status, result = java_json(hub, "verify", {"person_id": pid, "url": f"{base}/ben_val.jpg"})
    assert status == 200 and result["data"]["ismatch"] is True


def test_fields_of_a_clients_own_a_byte_order_mark_and_a_repeated_appid_are_taken(hub_server):
    """CLOUD_API.md: SDKs send fields of their own, to be ignored. A `need_detail: true`, a
    `threshold: 0.8` or an object was refused with 21 on every endpoint; a JSON body opening with
    a byte-order mark (Windows clients) was no JSON (3); an `appid` part sent twice with one value
    was 21. The fields an endpoint reads are still checked."""
    body = {"appid": hub_server.appid, "bucket": BUCKET, "need_detail": True, "threshold": 0.8,
            "options": {"a": 1}, "extras": [{"b": 2}]}
    headers = {**py2_headers(hub_server), "Content-Type": "application/json"}
    got = requests.post(f"{hub_server.url}/face/getgroupids", headers=headers, data=json.dumps(body), timeout=30)
    assert sdk_result(got)["code"] == 0
    bom = requests.post(f"{hub_server.url}/face/getgroupids", headers={**py2_headers(hub_server), **headers},
                        data=b"\xef\xbb\xbf" + json.dumps(body).encode(), timeout=30)
    assert sdk_result(bom)["code"] == 0
    twice = requests.post(f"{hub_server.url}/face/getgroupids", headers=py2_headers(hub_server),
                          files=[("appid", (None, hub_server.appid)), ("appid", (None, hub_server.appid))], timeout=30)
    assert sdk_result(twice)["code"] == 0
    read = requests.post(f"{hub_server.url}/face/getinfo", headers={**py2_headers(hub_server), **headers},
                         data=json.dumps({"appid": hub_server.appid, "person_id": True}), timeout=30)
    assert sdk_result(read)["code"] == 21  # a field the endpoint reads: still a string
