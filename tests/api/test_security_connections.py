"""Silent and slow TCP clients against a real hub (uvicorn on loopback, raw sockets).

About 1,006 silent unauthenticated connections used to deny the hub (no header timeout, the
unit's 1,024 open files); here a small configured cap and a 1 s header deadline show the same
mechanisms in seconds.
"""

from __future__ import annotations

import logging
import socket
import time

import pytest

from tests.support.hub import answer_to, closed_within, start_hub

HEADER_TIMEOUT_S = 1.0
CAP = 6


@pytest.fixture(scope="module")
def guarded_hub(tmp_path_factory, models_dir):
    with start_hub(tmp_path_factory.mktemp("conn"), server={
        "header_timeout_s": HEADER_TIMEOUT_S, "keepalive_timeout_s": 1, "max_connections": CAP,
        "address_share": 1.0,  # these tests hold the whole cap from one address
    }) as hub:
        yield hub


def _address(hub) -> tuple[str, int]:
    host, port = hub.url.split("//", 1)[1].rsplit(":", 1)
    return host, int(port)


def _health_ok(hub) -> bool:
    with socket.create_connection(_address(hub), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")
        sock.settimeout(5)
        answer = b""
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except ConnectionResetError:
            return False
    return answer.startswith(b"HTTP/1.1 200")


@pytest.fixture(scope="module")
def guarded_tls_hub(tmp_path_factory, tls_files, models_dir):
    with start_hub(tmp_path_factory.mktemp("conn-tls"), server={
        "tls_cert": str(tls_files.cert), "tls_key": str(tls_files.key),
        "header_timeout_s": HEADER_TIMEOUT_S, "max_connections": CAP, "address_share": 1.0,
    }) as hub:
        yield hub


@pytest.mark.parametrize("hub", ["guarded_hub", "guarded_tls_hub"])
def test_a_silent_connection_is_closed_after_the_header_timeout(hub, request):
    """With TLS the client never starts its handshake: asyncio's own server-side TLS held such a
    connection for 60 s, outside the connection cap."""
    with socket.create_connection(_address(request.getfixturevalue(hub))) as sock:
        started = time.monotonic()
        assert closed_within(sock, HEADER_TIMEOUT_S + 4)
        assert time.monotonic() - started >= HEADER_TIMEOUT_S * 0.8


def test_connections_stuck_in_the_tls_handshake_count_against_the_cap(guarded_tls_hub):
    address = _address(guarded_tls_hub)
    held = [socket.create_connection(address) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(address)
        started = time.monotonic()
        assert closed_within(extra, HEADER_TIMEOUT_S * 0.8)  # refused at once, not at the deadline
        assert time.monotonic() - started < HEADER_TIMEOUT_S * 0.8
        extra.close()
    finally:
        for s in held:
            s.close()


def test_a_request_right_after_the_tls_handshake_and_a_kept_alive_second_one_are_answered(
        guarded_tls_hub, tls_files):
    import json
    import ssl

    context = ssl.create_default_context(cafile=str(tls_files.ca))
    time.sleep(0.3)  # the previous test's sockets are closed on the server side
    with socket.create_connection(_address(guarded_tls_hub), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            for _ in range(2):
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n")
                answer = sock.recv(65536)
                assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
                length = int(answer.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
                body = answer.split(b"\r\n\r\n", 1)[1]
                while len(body) < length:
                    body += sock.recv(65536)
            assert json.loads(body)["status"] in ("ok", "degraded")


def test_headers_trickled_a_byte_at_a_time_do_not_extend_the_deadline(guarded_hub):
    request = b"POST /face/getgroupids HTTP/1.1\r\nHost: hub\r\nX-Slow: " + b"a" * 200
    with socket.create_connection(_address(guarded_hub)) as sock:
        started = time.monotonic()
        closed = False
        for byte in request:
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.05)
            if time.monotonic() - started > HEADER_TIMEOUT_S + 4:
                break
        assert closed or closed_within(sock, 0.5)
        assert time.monotonic() - started < HEADER_TIMEOUT_S + 4


def test_an_idle_kept_alive_connection_is_closed(guarded_hub):
    with socket.create_connection(_address(guarded_hub)) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n")
        sock.settimeout(5)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        assert closed_within(sock, 4)


def test_connections_past_the_cap_are_closed_at_once_with_one_log_line_and_service_resumes(guarded_hub, caplog):
    caplog.set_level(logging.WARNING, logger="edge.api.serving")
    address = _address(guarded_hub)
    held = [socket.create_connection(address) for _ in range(CAP)]
    try:
        time.sleep(0.2)
        extra = [socket.create_connection(address) for _ in range(10)]
        assert all(closed_within(s, 2) for s in extra)  # refused at once, well before the header timeout
        for s in extra:
            s.close()
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert _health_ok(guarded_hub)  # the silent ones are gone: the hub serves again
    lines = [r.getMessage() for r in caplog.records]
    # one line when the cap is reached and one when it clears, not one per refused connection
    assert sum("cap of 6 reached" in m for m in lines) == 1, lines
    assert sum("after refusing 10 connection(s)" in m for m in lines) == 1, lines


def test_below_the_cap_silent_connections_do_not_deny_the_hub(guarded_hub):
    address = _address(guarded_hub)
    held = [socket.create_connection(address) for _ in range(CAP - 2)]
    try:
        assert _health_ok(guarded_hub)
    finally:
        for s in held:
            s.close()


def test_a_flood_of_malformed_requests_logs_one_line_not_one_per_request(guarded_hub, caplog):
    uvicorn_log = logging.getLogger("uvicorn.error")  # uvicorn's loggers do not propagate to the root
    uvicorn_log.addHandler(caplog.handler)
    try:
        _send_garbage(guarded_hub, 20)
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    # a record can reach caplog twice (its handler here and at the root): count records, not lines
    lines = {id(r): r.getMessage() for r in caplog.records if "Invalid HTTP request" in r.getMessage()}
    assert len(lines) <= 1, list(lines.values())


def _send_garbage(hub, times: int) -> None:
    for _ in range(times):
        with socket.create_connection(_address(hub), timeout=5) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            try:
                while sock.recv(4096):
                    pass
            except OSError:
                pass


def _answer_to(hub, request: bytes) -> bytes:
    return answer_to(_address(hub), request, timeout=5)


def test_a_complete_80_kb_header_block_is_refused_431(guarded_hub, caplog):
    """10,000 header lines (80 KB) arriving at once were parsed and answered 200: h11's
    max_incomplete_event_size bounds only a header block still incomplete after a read."""
    caplog.set_level(logging.WARNING, logger="edge.api.serving")
    request = b"GET /health HTTP/1.1\r\nHost: hub\r\n" + b"X-A: b\r\n" * 10_000 + b"Connection: close\r\n\r\n"
    assert len(request) > 80_000
    answer = _answer_to(guarded_hub, request)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert b"16 KiB" in answer
    assert any("exceeded 16 KiB" in r.getMessage() for r in caplog.records)
    assert _health_ok(guarded_hub)  # one refused request, the hub serves on


def test_a_header_block_just_under_16_kib_is_served(guarded_hub):
    from edge.api.serving import MAX_HEADER_BYTES

    head = b"GET /health HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n"
    pad = MAX_HEADER_BYTES - len(head) - len(b"X-Pad: \r\n\r\n") - 16
    request = head + b"X-Pad: " + b"p" * pad + b"\r\n\r\n"
    assert MAX_HEADER_BYTES - 32 < len(request) < MAX_HEADER_BYTES
    assert _answer_to(guarded_hub, request).startswith(b"HTTP/1.1 200"), "a 16 KiB header block must be served"


def test_a_large_header_block_pipelined_behind_a_request_is_refused(guarded_hub):
    """The second request of one write reaches h11's parser only after the first is answered."""
    first = b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n"
    second = b"GET /health HTTP/1.1\r\nHost: hub\r\n" + b"X-A: b\r\n" * 10_000 + b"Connection: close\r\n\r\n"
    answer = _answer_to(guarded_hub, first + second)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert answer.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 431 " in answer, answer[-300:]


def test_a_complete_80_kb_header_block_over_tls_is_refused_431(guarded_tls_hub, tls_files):
    import ssl

    context = ssl.create_default_context(cafile=str(tls_files.ca))
    request = b"GET /health HTTP/1.1\r\nHost: hub\r\n" + b"X-A: b\r\n" * 10_000 + b"Connection: close\r\n\r\n"
    time.sleep(0.3)  # the previous tests' sockets are closed on the server side
    answer = b""
    with socket.create_connection(_address(guarded_tls_hub), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            try:
                sock.sendall(request)
                while chunk := sock.recv(65536):
                    answer += chunk
            except (OSError, ssl.SSLError):
                pass
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_a_byte_after_an_early_answer_does_not_hold_the_connection(guarded_hub):
    """A request answered before its body was read (here: a signature that is not one) left its
    body owed; uvicorn cancels its keep-alive timer at the next byte and sets none again, so one
    more byte, then silence, held the connection for good (1,000 of them, from four addresses
    and no key, kept every client out). The rest is dropped and the connection closes."""
    with socket.create_connection(_address(guarded_hub)) as sock:
        sock.sendall(b"POST /face/verify HTTP/1.1\r\nHost: hub\r\nAuthorization: not-a-signature\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
        sock.settimeout(10)
        assert sock.recv(4096).startswith(b"HTTP/1.1 ")  # answered before the body came
        sock.sendall(b" ")  # one more body byte, then silence
        started = time.monotonic()
        assert closed_within(sock, 10)
        assert time.monotonic() - started < 5


def test_a_client_that_reads_no_answer_is_closed_once_the_send_buffer_stays_full(guarded_hub, monkeypatch):
    """Pipelined requests whose answers the client never reads: each answer waited for room in
    the send buffer for ever (1,000 such connections held the hub). The connection is closed
    once the buffer stays full for WRITE_STALL_S (1 s here)."""
    import threading

    import edge.api.serving as serving

    monkeypatch.setattr(serving, "WRITE_STALL_S", 1.0)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(_address(guarded_hub))
    requests = b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n" * 40_000  # ~10 MB of answers
    threading.Thread(target=lambda: _send_quietly(sock, requests), daemon=True).start()
    try:
        time.sleep(4)  # the send buffers fill, nothing is read: reset meanwhile, its answers dropped
        sock.settimeout(5)
        received = 0
        with pytest.raises(ConnectionResetError):  # not the 10 MB of answers, then the keep-alive's close
            while chunk := sock.recv(65536):
                received += len(chunk)
        assert received < 1 << 20
    finally:
        sock.close()
    assert _health_ok(guarded_hub)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # closed by the hub meanwhile


def test_an_upload_still_coming_after_an_early_answer_finishes_and_reads_it(guarded_hub, monkeypatch):
    """A browser still uploading its photos when the answer came early (a login page, a 413)
    got a reset connection 2 s after the answer: the rest of the body is dropped while it keeps
    coming, and the client reads the answer once done. A pause of the header timeout (1 s here),
    or ANSWERED_LINGER_S in all, ends it."""
    import edge.api.serving as serving

    monkeypatch.setattr(serving, "ANSWERED_LINGER_S", 4.0)
    with socket.create_connection(_address(guarded_hub)) as sock:
        sock.sendall(b"POST /face/verify HTTP/1.1\r\nHost: hub\r\nAuthorization: not-a-signature\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{")
        started = time.monotonic()
        for _ in range(10):  # 3 s of upload, a chunk every 0.3 s: past the old 2 s linger
            time.sleep(0.3)
            sock.sendall(b" " * 100)
        assert time.monotonic() - started > 2.5
        sock.settimeout(5)
        answer = b""
        while chunk := sock.recv(4096):  # the answer, then the close (no reset)
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 ") and b'"code"' in answer
    with socket.create_connection(_address(guarded_hub)) as sock:  # a trickle is cut at the cap
        sock.sendall(b"POST /face/verify HTTP/1.1\r\nHost: hub\r\nAuthorization: not-a-signature\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n{")
        started = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for _ in range(40):
                time.sleep(0.5)
                sock.sendall(b" ")
        assert time.monotonic() - started < 8


def test_a_body_that_follows_an_early_answer_keeps_the_connection_for_the_next_request(guarded_hub):
    """A client's body often comes in a packet after its headers, after the answer when that
    needs no body (a refused signature): the connection was closed there, and the client's next
    request on it, sent as the answer came, met a closed connection. Once the body is in the
    connection goes on."""
    body = b'{"appid": "100001"}'
    with socket.create_connection(_address(guarded_hub)) as sock:
        sock.settimeout(5)
        sock.sendall(b"POST /face/verify HTTP/1.1\r\nHost: hub\r\nAuthorization: not-a-signature\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body))
        time.sleep(0.3)
        assert sock.recv(65536).startswith(b"HTTP/1.1 ")  # answered before the body
        sock.sendall(body + b"GET /health HTTP/1.1\r\nHost: hub\r\n\r\n")
        time.sleep(0.3)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
