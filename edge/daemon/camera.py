"""Frame sources: picamera2, OpenCV (USB index, RTSP/HTTP url, video file) and image files.

A `FrameSource` knows one kind of device and nothing else: `open()`, `read()` (a BGR frame, or
None for a bad frame the caller skips), `close()`. It raises `CameraError` when the device is
gone and `CameraEnded` when a finite source is exhausted. `Camera` wraps a source with what
every device needs: a frame-rate cap, retry with exponential backoff after failures (a dead
camera is never fatal) and a state summary for /health and the retained MQTT state.
"""

from __future__ import annotations

import glob as _glob
import logging
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.core.redact import without_password

if TYPE_CHECKING:
    import cv2

    from edge.daemon.config import CameraSettings

log = logging.getLogger(__name__)

# What the daemon shows of a camera url (events, state, /health, logs, errors) goes through
# without_password first: cameras take credentials in the userinfo and in parameters.


class CameraError(Exception):
    """The device failed or disconnected; the camera retries with backoff."""


class CameraEnded(Exception):
    """A finite source (files, video file) has no more frames."""


class FrameSource(ABC):
    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next BGR frame; None for a frame that could not be decoded (skipped, counted)."""

    def close(self) -> None:  # noqa: B027 - optional for sources without resources
        pass


class FilesSource(FrameSource):
    """Images matching a glob, played in name order as frames (tests, demos, replays)."""

    def __init__(self, pattern: str, loop: bool = False):
        self.pattern = pattern
        self.loop = loop
        self._paths: list[str] = []
        self._i = 0

    def open(self) -> None:
        self._paths = sorted(_glob.glob(self.pattern))
        if not self._paths:
            raise CameraError(f"no files match {self.pattern!r}")
        self._i = 0

    def read(self) -> np.ndarray | None:
        if self._i >= len(self._paths):
            if not self.loop:
                raise CameraEnded(self.pattern)
            # Looping re-reads the glob: a watched drop folder picks up new and removed files.
            self._paths = sorted(_glob.glob(self.pattern))
            self._i = 0
            if not self._paths:
                raise CameraError(f"no files match {self.pattern!r}")
        path = self._paths[self._i]
        self._i += 1
        import cv2

        # imread returns None for unreadable or non-image files: a bad frame, not a dead camera.
        return cv2.imread(path, cv2.IMREAD_COLOR)


class OpenCVSource(FrameSource):
    """cv2.VideoCapture on a device index, a stream url or a video file."""

    def __init__(self, target: str, width: int = 0, height: int = 0):
        self.target = target
        self.width, self.height = width, height
        self._cap: cv2.VideoCapture | None = None
        self._device = target.isascii() and target.isdigit()  # "0": /dev/video0 ("²" is a digit, no index)
        self._is_file = not self._device and "://" not in target

    def open(self) -> None:
        import cv2

        cap = cv2.VideoCapture(int(self.target) if self._device else self.target)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open opencv source {without_password(self.target)!r}")
        if self.width and self._device:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if not self._is_file:
            # Live source read at the processing rate: keep the driver's queue short so a
            # decision is made on what the camera sees now, not on a frame from seconds ago.
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        self._cap = cap

    def read(self) -> np.ndarray | None:
        if self._cap is None:
            raise CameraError("not open")
        ok, frame = self._cap.read()
        if not ok:
            if self._is_file:
                raise CameraEnded(without_password(self.target))
            raise CameraError(f"opencv source {without_password(self.target)!r} returned no frame")
        return frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class PiCameraSource(FrameSource):
    """Raspberry Pi camera through picamera2 (the `pi` extra), imported only when used."""

    def __init__(self, width: int, height: int):
        self.width, self.height = width, height
        self._cam: Any = None  # a picamera2.Picamera2 (no type information)

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as exc:
            raise CameraError(f"picamera2 is not installed (pip install 'edge-verifier[pi]'): {exc}") from None
        try:
            cam = Picamera2()
            cam.configure(cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "BGR888"}))
            cam.start()
        except Exception as exc:  # the library raises plain RuntimeError/IndexError for no camera
            raise CameraError(f"picamera2: {exc}") from None
        self._cam = cam

    def read(self) -> np.ndarray | None:
        try:
            return self._cam.capture_array("main")
        except Exception as exc:
            raise CameraError(f"picamera2 capture failed: {exc}") from None

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            except Exception:  # closing a dead camera must not stop a shutdown
                pass
            self._cam = None


class LatestFrame(FrameSource):
    """Reads a live source continuously in a thread and hands out only the newest frame.

    A live camera keeps producing while the daemon works on a frame; read in the daemon's loop,
    the driver's (or an RTSP client's) queue would hand out ever older frames. Here the queue is
    drained all the time and `read()` returns the frame the camera delivered last.
    """

    def __init__(self, inner: FrameSource, stall_s: float = 5.0):
        self.inner = inner
        self.stall_s = stall_s
        self._cond = threading.Condition()
        self._frame: np.ndarray | None = None
        self._seq = self._seen = 0
        self._error: Exception | None = None
        self._running = False
        self._thread: threading.Thread | None = None

    def open(self) -> None:
        self.inner.open()
        self._frame, self._seq, self._seen, self._error = None, 0, 0, None
        self._running = True
        self._thread = threading.Thread(target=self._grab, name="camera-grab", daemon=True)
        self._thread.start()

    def _grab(self) -> None:
        while self._running:
            try:
                frame = self.inner.read()
            except (CameraError, CameraEnded) as exc:
                with self._cond:
                    self._error = exc
                    self._cond.notify_all()
                return
            with self._cond:
                if frame is None:
                    self._error = None  # a bad frame: skip it, keep grabbing
                    continue
                self._frame, self._seq = frame, self._seq + 1
                self._cond.notify_all()

    def read(self) -> np.ndarray | None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > self._seen or self._error is not None,
                                       timeout=self.stall_s):
                raise CameraError(f"no frame for {self.stall_s:.0f}s")
            if self._seq > self._seen:
                self._seen = self._seq
                return self._frame
            raise self._error  # type: ignore[misc]

    def close(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=self.stall_s)
            self._thread = None
        self.inner.close()


def make_source(spec: str, *, loop: bool = False, width: int = 0, height: int = 0) -> FrameSource:
    """`picamera2` | `opencv:<index|url|file>` | `files:<glob>`; ValueError for anything else.

    Live sources (the Pi camera, a USB index, a stream url) are wrapped in `LatestFrame`;
    a video file and image files are played frame by frame.
    """
    if spec == "picamera2":
        return LatestFrame(PiCameraSource(width, height))
    if spec.startswith("opencv:") and spec[7:]:
        source = OpenCVSource(spec[7:], width, height)
        return source if source._is_file else LatestFrame(source)
    if spec.startswith("files:") and spec[6:]:
        return FilesSource(spec[6:], loop=loop)
    raise ValueError(f"unknown camera source {without_password(spec)!r} (picamera2 | opencv:<...> | files:<glob>)")


@dataclass
class CameraState:
    status: str = "starting"  # starting | ok | retrying | ended | stopped
    frames: int = 0
    bad_frames: int = 0
    failures: int = 0
    last_error: str = ""

    def as_dict(self) -> dict:
        return {"status": self.status, "frames": self.frames, "bad_frames": self.bad_frames,
                "failures": self.failures, "last_error": self.last_error}


class Camera:
    """A source with a rate cap, retry/backoff on failure and a state summary."""

    def __init__(self, source: FrameSource, *, name: str = "", rate: float = 5.0,
                 retry_initial_s: float = 1.0, retry_max_s: float = 30.0):
        self.source = source
        self.name = name
        self.period = 1.0 / rate
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.state = CameraState()
        self._open = False
        self._next_at = 0.0
        self._delay = retry_initial_s
        self._retry_at = 0.0

    def read(self, stop: threading.Event, max_block_s: float = 1.0) -> np.ndarray | None:
        """The next good frame, or None if there is none within `max_block_s` (ended, retrying
        after a failure, or `stop` set): the caller's loop keeps turning (watchdog, timers).

        Bad frames are counted and skipped; failures close the source and reopen it after a
        doubling delay (capped). `state.status` says which case it is.
        """
        deadline = time.monotonic() + max_block_s
        if self.state.status == "ended":
            stop.wait(max_block_s)  # nothing more will come: idle, don't spin the caller's loop
            return None
        while not stop.is_set() and self.state.status != "ended":
            now = time.monotonic()
            if not self._open:
                if now < self._retry_at:
                    stop.wait(min(self._retry_at, deadline) - now)
                    if time.monotonic() >= deadline:
                        return None
                    continue
                try:
                    self.source.open()
                    self._open = True
                    self.state.status = "ok"
                except CameraError as exc:
                    self._failed(exc)
                    continue
                except Exception as exc:  # drivers raise what they like (cv2.error, RuntimeError)
                    self._failed(CameraError(f"{type(exc).__name__}: {exc}"))
                    continue
            wait = self._next_at - now
            if wait > 0:
                if stop.wait(min(wait, max(0.0, deadline - now))):
                    break
                if time.monotonic() < self._next_at:
                    return None
            # Rate cap without catch-up bursts: a slow frame delays the next, never doubles up.
            self._next_at = max(self._next_at, time.monotonic()) + self.period
            try:
                frame = self.source.read()
            except CameraEnded:
                self.state.status = "ended"
                self.close()
                return None
            except CameraError as exc:
                self._failed(exc)
                continue
            except Exception as exc:  # a driver error must not end the daemon's main loop
                self._failed(CameraError(f"{type(exc).__name__}: {exc}"))
                continue
            if frame is None or not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.size == 0:
                self.state.bad_frames += 1
                if time.monotonic() >= deadline:
                    return None
                continue
            self.state.frames += 1
            self._delay = self.retry_initial_s
            return frame
        return None

    def _failed(self, exc: Exception) -> None:
        self.state.failures += 1
        self.state.last_error = without_password(str(exc))  # drivers quote the url they failed on
        self.state.status = "retrying"
        log.warning("camera %s failed (%s); retrying in %.1fs", self.name, self.state.last_error,
                    self._delay)
        self.close()
        self._retry_at = time.monotonic() + self._delay
        self._delay = min(self._delay * 2, self.retry_max_s)

    def close(self) -> None:
        if self._open:
            self._open = False
            try:
                self.source.close()
            except Exception as exc:  # closing a broken device must not stop the retry
                log.warning("camera %s: close failed (%s)", self.name, without_password(str(exc)))


def from_settings(cam: CameraSettings) -> Camera:
    """Build a `Camera` from `EdgeSettings.camera`."""
    source = make_source(cam.source, loop=cam.loop, width=cam.width, height=cam.height)
    return Camera(source, name=cam.name or without_password(cam.source), rate=cam.rate,
                  retry_initial_s=cam.retry_initial_s, retry_max_s=cam.retry_max_s)
