"""Camera sources: files: playback, bad frames, failures retried with backoff, never fatal."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from edge.daemon.camera import Camera, FilesSource, FrameSource, make_source


def _write_images(tmp_path, n=3):
    for i in range(n):
        img = np.full((40, 60, 3), 40 * i, np.uint8)
        cv2.imwrite(str(tmp_path / f"f{i}.png"), img)


def _frames(cam, stop, limit=50):
    out = []
    for _ in range(limit):
        f = cam.read(stop, max_block_s=0.5)
        if f is not None:
            out.append(f)
        if cam.state.status == "ended":
            break
    return out


def test_files_source_plays_images_in_name_order_then_ends(tmp_path):
    _write_images(tmp_path)
    cam = Camera(FilesSource(str(tmp_path / "*.png")), rate=100)
    frames = _frames(cam, threading.Event())
    assert [int(f[0, 0, 0]) for f in frames] == [0, 40, 80]
    assert cam.state.status == "ended" and cam.state.frames == 3


def test_unreadable_files_are_skipped_and_counted_as_bad_frames(tmp_path):
    _write_images(tmp_path, 2)
    (tmp_path / "f0_garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (tmp_path / "f1_empty.png").write_bytes(b"")
    cam = Camera(FilesSource(str(tmp_path / "*.png")), rate=100)
    frames = _frames(cam, threading.Event())
    assert len(frames) == 2
    assert cam.state.bad_frames == 2 and cam.state.status == "ended"


def test_looping_files_source_starts_again(tmp_path):
    _write_images(tmp_path, 2)
    cam = Camera(FilesSource(str(tmp_path / "*.png"), loop=True), rate=200)
    frames = _frames(cam, threading.Event(), limit=5)
    assert [int(f[0, 0, 0]) for f in frames] == [0, 40, 0, 40, 0]


def test_missing_camera_is_retried_with_growing_delay_and_recovers(tmp_path):
    cam = Camera(FilesSource(str(tmp_path / "*.png")), rate=100, retry_initial_s=0.05, retry_max_s=0.2)
    stop = threading.Event()
    for _ in range(6):
        assert cam.read(stop, max_block_s=0.1) is None
    assert cam.state.status == "retrying" and cam.state.failures >= 2
    assert "no files match" in cam.state.last_error
    _write_images(tmp_path, 1)  # the camera comes back
    frames = [f for f in (cam.read(stop, max_block_s=0.3) for _ in range(5)) if f is not None]
    assert len(frames) == 1


def test_dead_opencv_device_is_reported_not_fatal():
    cam = Camera(make_source("opencv:/nonexistent/video.mp4"), rate=100, retry_initial_s=0.05)
    assert cam.read(threading.Event(), max_block_s=0.2) is None
    assert cam.state.status == "retrying" and cam.state.failures >= 1


def test_opencv_video_file_plays_its_frames(tmp_path):
    path = str(tmp_path / "v.avi")
    w = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(4):
        w.write(np.full((48, 64, 3), 60 * i, np.uint8))
    w.release()
    cam = Camera(make_source(f"opencv:{path}"), rate=100)
    frames = _frames(cam, threading.Event())
    assert len(frames) == 4 and cam.state.status == "ended"


def test_unknown_source_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown camera source"):
        make_source("usb0")


def test_stop_ends_a_blocked_read_promptly(tmp_path):
    cam = Camera(FilesSource(str(tmp_path / "*.png")), rate=100, retry_initial_s=30)
    stop = threading.Event()
    stop.set()
    assert cam.read(stop, max_block_s=10) is None


def test_an_ended_camera_idles_instead_of_returning_at_once(tmp_path):
    class RecordingStop(threading.Event):
        waits: list = []

        def wait(self, timeout=None):
            self.waits.append(timeout)
            return super().wait(0)

    _write_images(tmp_path, 1)
    cam = Camera(FilesSource(str(tmp_path / "*.png")), rate=100)
    _frames(cam, threading.Event())
    assert cam.state.status == "ended"
    stop = RecordingStop()
    assert cam.read(stop, max_block_s=0.3) is None
    assert stop.waits == [0.3]  # it blocks for its slot: the daemon's loop does not spin a core


def test_a_live_source_hands_out_only_the_newest_frame_and_reports_its_failure(tmp_path):
    from edge.daemon.camera import CameraError, LatestFrame

    _write_images(tmp_path, 3)
    live = LatestFrame(FilesSource(str(tmp_path / "*.png"), loop=True))
    live.open()
    try:
        first = live.read()
        second = live.read()
        assert first is not None and second is not None
        assert live._seq >= 2  # the grabber runs ahead; each read is the latest, none repeated
        for f in tmp_path.glob("*.png"):
            f.unlink()  # the device disappears
        with pytest.raises(CameraError):
            for _ in range(100):
                live.read()
    finally:
        live.close()


class _FlakyDriver(FrameSource):
    """A device whose driver raises its own exceptions, not CameraError (picamera2 raises
    RuntimeError when the ribbon cable comes loose, OpenCV raises cv2.error): no such device
    exists on this machine, so this small source stands in for it."""

    def __init__(self):
        self.opens = 0

    def open(self) -> None:
        self.opens += 1
        if self.opens == 2:
            raise OSError("device busy")

    def read(self) -> np.ndarray | None:
        if self.opens == 1:
            raise RuntimeError("camera frontend has timed out")
        return np.zeros((8, 8, 3), np.uint8)

    def close(self) -> None:
        raise RuntimeError("close of a dead device")


def test_a_driver_raising_its_own_exceptions_is_retried_not_fatal():
    cam = Camera(_FlakyDriver(), rate=100, retry_initial_s=0.01, retry_max_s=0.02)
    stop = threading.Event()
    frames = []
    for _ in range(200):
        f = cam.read(stop, max_block_s=0.1)
        if f is not None:
            frames.append(f)
            break
    assert frames and cam.state.status == "ok"
    assert cam.state.failures == 2 and "OSError" in cam.state.last_error


def test_a_fifo_in_the_files_folder_is_a_bad_frame_not_a_hang(tmp_path):
    """`files:` read each match with cv2.imread: a FIFO named b.jpg hung the camera (and the
    daemon's start after the watchdog's restart). Files are read as the tools read them:
    regular, at most 50 MB, decoded within the pixel limits."""
    import os

    _write_images(tmp_path, 1)
    os.mkfifo(tmp_path / "b.png")
    cam = Camera(FilesSource(str(tmp_path / "*.png")), rate=100)
    frames = _frames(cam, threading.Event())
    assert len(frames) == 1 and cam.state.bad_frames == 1 and cam.state.status == "ended"


@pytest.mark.parametrize("target", ["/dev/video0", "/dev/v4l/by-id/usb-cam-video-index0"])
def test_a_device_named_by_its_path_is_a_live_camera_not_a_video_file(target):
    """`opencv:/dev/video0` was a video file: read unbuffered, and ended for good (health `ok`)
    at its first glitch. A /dev path is a device, read by the newest-frame thread like an index."""
    from edge.daemon.camera import LatestFrame, OpenCVSource, make_source

    assert not OpenCVSource(target)._is_file
    assert isinstance(make_source(f"opencv:{target}"), LatestFrame)
    assert not isinstance(make_source("opencv:/srv/recording.mp4"), LatestFrame)


def test_the_pi_camera_is_asked_for_frames_in_opencvs_byte_order(monkeypatch):
    """picamera2's "BGR888" lays pixels out R, G, B: every Pi frame reached the models with red
    and blue swapped. Its "RGB888" is B, G, R, OpenCV's order. No Pi camera here: a stand-in
    for picamera2 records what the source asks it for."""
    import sys
    import types

    from edge.daemon.camera import PiCameraSource

    asked = {}

    class Picamera2:
        def create_video_configuration(self, main):
            asked.update(main)
            return main

        def configure(self, config):
            pass

        def start(self):
            pass

    monkeypatch.setitem(sys.modules, "picamera2", types.SimpleNamespace(Picamera2=Picamera2))
    PiCameraSource(640, 480).open()
    assert asked == {"size": (640, 480), "format": "RGB888"}


def test_a_read_that_never_returns_holds_one_thread_and_tells_the_watchdog():
    """A live source whose read hangs (a driver ignoring its timeouts; picamera2's capture has
    none) was given up after stall_s and a new session opened while the hung read kept its
    thread and device: 26 `camera-grab` threads in 3 s, and with the device held every reopen
    failed while the loop turned and the watchdog was fed. One reader at a time now; how long
    it has held the device is what the daemon's watchdog reads (CAMERA_STUCK_RESTART_S)."""
    import threading
    import time

    from edge.daemon.camera import Camera, FrameSource, LatestFrame

    release = threading.Event()

    class Hangs(FrameSource):
        def open(self):
            pass

        def read(self):
            release.wait(30)  # never returns while the test runs
            return None

    stop = threading.Event()
    cam = Camera(LatestFrame(Hangs, stall_s=0.1, wait_s=0.05, first_frame_s=0.1), rate=50,
                 retry_initial_s=0.01, retry_max_s=0.02)
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            cam.read(stop, max_block_s=0.2)
        grabs = [t for t in threading.enumerate() if t.name == "camera-grab" and t.is_alive()]
        assert len(grabs) == 1, f"{len(grabs)} camera-grab threads"
        assert cam.stuck_for_s() > 1.0 and "still held" in cam.state.last_error
        assert cam.state.status == "retrying"
    finally:
        release.set()
        cam.close()
