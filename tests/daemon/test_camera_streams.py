"""A network camera that misbehaves, as a real MJPEG stream over HTTP on loopback read by
OpenCV's FFmpeg (a spoofed camera or a frozen one looks the same): the daemon's loop never
waits for it, it never crashes, and a frame of an old connection is never handed out. Each case
runs in a process of its own, so a crash fails the test instead of ending the test run."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent('''
    import json, socket, sys, threading, time
    import cv2, numpy as np
    from edge.daemon.camera import Camera, make_source

    mode, seconds = sys.argv[1], float(sys.argv[2])

    def jpeg(w, h):
        return cv2.imencode(".jpg", np.full((h, w, 3), 128, np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 10])[1].tobytes()

    def send(conn, data):
        head = b"--f\\r\\nContent-Type: image/jpeg\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(data)
        conn.sendall(head + data + b"\\r\\n")

    def handle(conn):
        try:
            if mode == "silent":  # accepts, never answers
                time.sleep(600)
            conn.recv(65536)
            conn.sendall(b"HTTP/1.0 200 OK\\r\\nContent-Type: multipart/x-mixed-replace; boundary=f\\r\\n\\r\\n")
            if mode == "big":  # a frame far over the limit first, on every connection
                send(conn, jpeg(6000, 4000))
            for _ in range(20):
                send(conn, jpeg(320, 240))
                time.sleep(0.05)
            time.sleep(600)  # then it stalls, the connection held open
        except OSError:
            pass

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    threading.Thread(target=lambda: [threading.Thread(target=handle, args=(server.accept()[0],), daemon=True).start()
                                      for _ in iter(int, 1)], daemon=True).start()
    camera = Camera(make_source(f"opencv:http://127.0.0.1:{server.getsockname()[1]}/video.mjpg"), rate=10,
                    retry_initial_s=0.2, retry_max_s=1.0)
    stop = threading.Event()
    worst, frames, statuses, errors = 0.0, 0, set(), set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        frame = camera.read(stop, max_block_s=0.5)
        worst = max(worst, time.monotonic() - started)
        frames += frame is not None
        statuses.add(camera.state.status)
        errors.add(camera.state.last_error)
    grabbers = sum(t.name == "camera-grab" and t.is_alive() for t in threading.enumerate())
    print(json.dumps({"worst": worst, "frames": frames, "statuses": sorted(statuses), "errors": sorted(errors),
                      "grabbers": grabbers}))
''')


def _run(mode: str, seconds: float) -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT, mode, str(seconds)], capture_output=True, text=True,
                          timeout=seconds + 90)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-800:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("mode", ["stall", "silent"])
def test_a_stream_that_stalls_or_never_answers_neither_holds_the_loop_nor_crashes(mode):
    """A stream that stopped sending was released while its read still ran (a segfault, 3 of
    3), and one that accepted and never answered held the loop 30 s at each try, the systemd
    watchdog's interval."""
    result = _run(mode, 14.0)
    assert result["worst"] < 2.0, result  # every turn of the loop comes back within its bound
    assert any(result["errors"]), result  # a failure, said (no frame, cannot open, returned no frame)
    if mode == "stall":
        assert result["frames"] > 0
    assert result["grabbers"] <= 3, result  # a thread stuck in a read ends with its read


def test_a_frame_over_the_pixel_limit_is_a_failure_not_a_frame():
    """An 8000x6000 frame reached the pipeline whole (531 MB before any model ran, near the
    unit's MemoryMax); over MAX_FRAME_PIXELS the camera reconnects instead."""
    result = _run("big", 8.0)
    assert any("pixels" in e for e in result["errors"]), result
    assert result["worst"] < 2.0, result
