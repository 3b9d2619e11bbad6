"""Requests as proxies, Node form-data and hostile JSON send them, on raw sockets to a real hub.

- absolute-form request targets (`POST http://host/face/op HTTP/1.1`, what PHP/Java/Node
  `setProxy` and libcurl's `http_proxy` send) are routed by their path;
- every unmatched request gets the JSON envelope, not uvicorn's plain-text 404/405; a trailing
  slash (`/face/verify/`) too, never a redirect built from the client's Host header;
- a multipart field sent twice keeps both values, in order; an indexed part sent twice, a name
  sent both plain and indexed, or a JSON key given twice is refused with 21, never one dropped;
- a lone surrogate (`"\\ud800"`) in any text field answers 21, not 213 with a traceback.
"""

from __future__ import annotations

import json
import socket

import pytest

from edge.core import errors
from edge.core.signature import sign
from tests.support.hub import post


def raw_request(hub, method: str, target: str, body: bytes = b"", headers: dict | None = None) -> tuple[int, dict]:
    """Send one HTTP/1.1 request verbatim; (status, parsed JSON body). Fails if the body is not JSON."""
    host, port = hub.url.split("//", 1)[1].rsplit(":", 1)
    head = {"Host": f"{host}:{port}", "Content-Length": str(len(body)), "Connection": "close", **(headers or {})}
    request = f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request.encode("latin-1") + body)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    header, _, payload = answer.partition(b"\r\n\r\n")
    status = int(header.split(b" ", 2)[1])
    assert b"content-type: application/json" in header.lower(), answer[:300]
    return status, json.loads(payload)


def _signed_json(hub, data: dict) -> tuple[bytes, dict]:
    return json.dumps(data).encode(), {
        "Authorization": sign(hub.appid, hub.secret_id, hub.secret_key), "Content-Type": "application/json",
    }


@pytest.mark.parametrize("scheme", ["http", "HTTPS"])
def test_absolute_form_request_target_is_routed_by_its_path(hub_server, scheme):
    body, headers = _signed_json(hub_server, {"appid": hub_server.appid})
    host = hub_server.url.split("//", 1)[1]
    status, answer = raw_request(hub_server, "POST", f"{scheme}://{host}/face/getgroupids?x=1", body, headers)
    assert status == 200 and answer["code"] == 0 and "group_ids" in answer["data"], answer


@pytest.mark.parametrize("method,target,status", [
    ("POST", "/nothing/here", 404),
    ("GET", "/", 404),
    ("POST", "/health", 405),
    ("DELETE", "/metrics", 405),
])
def test_every_unmatched_request_gets_the_json_envelope(hub_server, method, target, status):
    got, answer = raw_request(hub_server, method, target)
    assert got == status
    assert answer["code"] == errors.INVALID_PARAMETER and answer["data"] == {} and answer["message"]


def _raw_answer(hub, request: bytes) -> bytes:
    host, port = hub.url.split("//", 1)[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("method,target,status", [
    ("POST", "/face/verify/", 200),
    ("POST", "/edge/claim/", 200),
    ("GET", "/face/getinfo/", 200),
    ("GET", "/health/", 404),
    ("POST", "/metrics/", 404),
])
def test_a_trailing_slash_gets_the_envelope_not_a_redirect_built_from_the_host_header(hub_server, method,
                                                                                      target, status):
    body = b'{"appid": "1000001", "person_id": "p", "url": "http://x/y.jpg"}'  # unsigned: never looked at
    answer = _raw_answer(hub_server, (
        f"{method} {target} HTTP/1.1\r\nHost: evil.attacker.example\r\nX-Forwarded-Host: evil2.example\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body)
    header, _, payload = answer.partition(b"\r\n\r\n")
    assert header.startswith(f"HTTP/1.1 {status} ".encode()), answer[:300]
    assert b"location:" not in header.lower() and b"evil" not in answer.lower(), answer[:500]
    envelope = json.loads(payload)
    assert envelope["code"] == errors.INVALID_PARAMETER and envelope["data"] == {}, envelope
    if status == 200:
        assert f"no trailing slash: {target.rstrip('/')}" in envelope["message"]


def test_repeated_multipart_field_keeps_every_value_in_order(hub_server, faces_dir):
    photo = (faces_dir / "five_celebrity" / "Madonna" / "train_1.jpg").read_bytes()
    files = [
        ("appid", (None, hub_server.appid)),
        ("person_id", (None, "repeated-fields")),
        ("group_ids", (None, "grp-b")),
        ("group_ids", (None, "grp-a")),
        ("image", ("m.jpg", photo, "image/jpeg")),
    ]
    created = post(hub_server, "newperson", files=files)
    assert created["code"] == 0, created
    assert created["data"]["group_ids"] == ["grp-b", "grp-a"]
    info = post(hub_server, "getinfo", json={"appid": hub_server.appid, "person_id": "repeated-fields"})
    assert sorted(info["data"]["group_ids"]) == ["grp-a", "grp-b"]


def test_repeated_scalar_field_is_refused_not_silently_the_last(hub_server):
    files = [("appid", (None, hub_server.appid)), ("appid", (None, hub_server.appid)),
             ("person_id", (None, "a")), ("person_id", (None, "b"))]
    answer = post(hub_server, "getinfo", files=files)
    assert answer["code"] == errors.INVALID_PARAMETER, answer


@pytest.mark.parametrize("parts", [
    [("group_ids[0]", "grp-a"), ("group_ids[0]", "grp-b")],
    [("group_ids", "grp-a"), ("group_ids[0]", "grp-b")],
    [("group_ids[0]", "grp-a"), ("group_ids", "grp-b")],
    [("group_ids[]", "grp-a"), ("group_ids[0]", "grp-b")],
    [("group_ids[0]", "grp-a"), ("images[0]", "IMG"), ("images[0]", "IMG")],
], ids=["index-twice", "plain-then-indexed", "indexed-then-plain", "append-then-index", "images-index-twice"])
def test_an_indexed_part_sent_twice_or_beside_its_plain_name_is_refused_not_one_dropped(hub_server, faces_dir,
                                                                                          parts):
    photo = (faces_dir / "five_celebrity" / "Madonna" / "train_1.jpg").read_bytes()
    person = f"indexed-twice-{len(parts)}-{parts[1][0]}"
    files = [("appid", (None, hub_server.appid)), ("person_id", (None, person)),
             *[(name, ("i.jpg", photo, "image/jpeg") if value == "IMG" else (None, value)) for name, value in parts]]
    if not any(name.startswith("images") for name, _ in parts):
        files.append(("image", ("m.jpg", photo, "image/jpeg")))
    answer = post(hub_server, "newperson", files=files)
    assert answer["code"] == errors.INVALID_PARAMETER, answer
    assert "more than once" in answer["message"] or "both as" in answer["message"], answer
    info = post(hub_server, "getinfo", json={"appid": hub_server.appid, "person_id": person})
    assert info["code"] == errors.PERSON_UNKNOWN, info  # nothing was enrolled with half the groups


def test_indexed_parts_appended_after_explicit_indexes_keep_every_value(hub_server, faces_dir):
    photo = (faces_dir / "five_celebrity" / "Madonna" / "train_1.jpg").read_bytes()
    files = [("appid", (None, hub_server.appid)), ("person_id", (None, "indexed-append")),
             ("group_ids[1]", (None, "grp-b")), ("group_ids[]", (None, "grp-c")), ("group_ids[0]", (None, "grp-a")),
             ("image", ("m.jpg", photo, "image/jpeg"))]
    created = post(hub_server, "newperson", files=files)
    assert created["code"] == 0 and created["data"]["group_ids"] == ["grp-a", "grp-b", "grp-c"], created


def test_a_json_key_given_twice_is_refused_not_silently_the_last(hub_server):
    body = (b'{"appid": "%s", "person_id": "json-dup", "person_id": "someone-else", "person_name": "n"}'
            % hub_server.appid.encode())
    status, answer = raw_request(hub_server, "POST", "/face/setinfo", body, {
        "Authorization": sign(hub_server.appid, hub_server.secret_id, hub_server.secret_key),
        "Content-Type": "application/json",
    })
    assert status == 200 and answer["code"] == errors.INVALID_PARAMETER, answer
    assert "person_id sent more than once" in answer["message"]


@pytest.mark.parametrize("field", ["person_id", "person_name", "tag", "group_ids", "appid", "key"])
def test_lone_surrogate_in_any_text_field_answers_21(hub_server, field):
    data = {"appid": hub_server.appid, "person_id": "p1", "group_ids": ["g1"], "person_name": "n", "tag": "t"}
    if field == "group_ids":
        data[field] = ["\ud800"]
    elif field == "key":
        data["\udfff"] = "x"
    else:
        data[field] = "x\ud800y"
    body = json.dumps(data).encode()  # ensure_ascii: the surrogate travels as the escape \ud800
    assert b"\\ud800" in body or b"\\udfff" in body
    status, answer = raw_request(hub_server, "POST", "/face/setinfo", body, {
        "Authorization": sign(hub_server.appid, hub_server.secret_id, hub_server.secret_key),
        "Content-Type": "application/json",
    })
    assert status == 200 and answer["code"] == errors.INVALID_PARAMETER, answer
