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
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from edge.core.redact import url_without_password, without_password

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


class NoFrameYet(Exception):
    """A live source has no new frame within its wait (not a failure: the caller's loop turns)."""


# A stream's frame above this many pixels is a failure (the camera reconnects): a spoofed or
# broken camera sent 8000x6000 frames, 531 MB before any model ran, near the unit's MemoryMax.
MAX_FRAME_PIXELS = 16_000_000
# OpenCV's FFmpeg waits 30 s by default to open a stream and for each frame: a camera that
# accepted and never answered held the grab thread that long.
STREAM_OPEN_TIMEOUT_MS, STREAM_READ_TIMEOUT_MS = 10_000, 5_000

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
        from edge.core.errors import ApiError
        from edge.vision.image import load_image

        # Regular files of at most 50 MB, decoded within the pixel limits (a FIFO named b.jpg hung
        # the camera, an image bomb decoded past the unit's memory); an unreadable or non-image
        # file is a bad frame, not a dead camera.
        try:
            return load_image(path)
        except ApiError:
            return None


class OpenCVSource(FrameSource):
    """cv2.VideoCapture on a device index, a stream url or a video file."""

    def __init__(self, target: str, width: int = 0, height: int = 0):
        self.target = target
        self.width, self.height = width, height
        self._cap: cv2.VideoCapture | None = None
        self._index = target.isascii() and target.isdigit()  # "0": /dev/video0 ("²" is a digit, no index)
        # a device by its path (/dev/video0, /dev/v4l/by-id/...) is live like an index: it was taken
        # for a video file, played unbuffered, and ended for good at its first glitch
        self._device = self._index or target.startswith("/dev/")
        self._stream = "://" in target
        self._is_file = not self._device and not self._stream

    def open(self) -> None:
        import cv2

        if self._stream:  # bounded waits (OpenCV's FFmpeg: 30 s by default for each)
            cap = cv2.VideoCapture(self.target, cv2.CAP_ANY, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, STREAM_OPEN_TIMEOUT_MS,
                                                              cv2.CAP_PROP_READ_TIMEOUT_MSEC, STREAM_READ_TIMEOUT_MS])
        else:
            cap = cv2.VideoCapture(int(self.target) if self._index else self.target)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"cannot open opencv source {url_without_password(self.target)!r}")
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
                raise CameraEnded(url_without_password(self.target))
            raise CameraError(f"opencv source {url_without_password(self.target)!r} returned no frame")
        if frame is not None and frame.shape[0] * frame.shape[1] > MAX_FRAME_PIXELS:
            raise CameraError(f"opencv source {url_without_password(self.target)!r} sent a frame of "
                              f"{frame.shape[1]}x{frame.shape[0]}, over {MAX_FRAME_PIXELS} pixels")
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
        except (ImportError, ValueError) as exc:  # ValueError: a module built for another numpy
            raise CameraError(f"picamera2 cannot be imported (on Raspberry Pi OS: apt install python3-picamera2, "
                              f"and the venv made with VENV_FLAGS=--system-site-packages): {exc}") from None
        try:
            cam = Picamera2()
            # picamera2's "RGB888" is laid out B, G, R in memory, OpenCV's order ("BGR888" is
            # R, G, B: every Pi frame reached the models with red and blue swapped)
            cam.configure(cam.create_video_configuration(
                main={"size": (self.width, self.height), "format": "RGB888"}))
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
    drained all the time and `read()` returns the frame the camera delivered last, with the time
    it arrived (`frame_at`, perf_counter), so a frame that waited counts its wait.

    Each `open()` is a session of its own: a source made for it (`inner` is a factory, or one
    source reused), opened and read in the session's thread, closed by that thread when its read
    returns. The daemon's loop never waits for the device: a stream that accepted and never
    answered held the loop 30 s (the systemd watchdog's interval: killed, again and again), and a
    stream that stalled was released while its read still ran (a segfault) and left a frame
    of the old session to be decided as new.
    """

    def __init__(self, inner: FrameSource | Callable[[], FrameSource], stall_s: float = 5.0, wait_s: float = 0.5,
                 first_frame_s: float = STREAM_OPEN_TIMEOUT_MS / 1000 + 5.0):
        self._make: Callable[[], FrameSource] = (lambda: inner) if isinstance(inner, FrameSource) else inner
        # no frame for stall_s is a failure; the first one may take first_frame_s (a stream opens)
        self.stall_s, self.wait_s, self.first_frame_s = stall_s, wait_s, first_frame_s
        self._cond = threading.Condition()
        self._session = 0
        self._frame: np.ndarray | None = None
        self._arrived = 0.0
        self._seq = self._seen = 0
        self._error: Exception | None = None
        self._since = 0.0  # monotonic: the session's start or its last frame
        self.frame_at = 0.0
        self._thread: threading.Thread | None = None  # the last session's reader
        self._stuck_since: float | None = None  # monotonic: since when that reader's read has not returned

    def open(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            # A read that never returns (a driver ignoring its timeouts; picamera2's capture has
            # none) keeps its thread and its device: each reopen added a thread that never ended
            # (26 in 3 s), and a device still held makes every reopen fail anyway. One at a time:
            # the camera retries until that read returns (stuck_for_s, for the watchdog).
            if self._stuck_since is None:
                self._stuck_since = time.monotonic()
            raise CameraError("the camera's last read has not returned: its device is still held")
        self._stuck_since = None
        with self._cond:
            self._session += 1
            self._frame, self._seq, self._seen, self._error = None, 0, 0, None
            self._since = time.monotonic()
            session = self._session
        self._thread = threading.Thread(target=self._grab, args=(session,), name="camera-grab", daemon=True)
        self._thread.start()

    def stuck_for_s(self) -> float:
        """How long a reader of an earlier session has held the device (0: none)."""
        return 0.0 if self._stuck_since is None else time.monotonic() - self._stuck_since

    def _current(self, session: int) -> bool:
        with self._cond:
            return session == self._session

    def _grab(self, session: int) -> None:
        error: Exception | None = None
        source: FrameSource | None = None
        try:
            source = self._make()
            source.open()
            while self._current(session):
                frame = source.read()
                arrived = time.perf_counter()
                with self._cond:
                    if session != self._session:
                        return  # closed meanwhile: its frame is not this session's
                    if frame is not None:  # None: a bad frame, skipped
                        self._frame, self._arrived, self._seq = frame, arrived, self._seq + 1
                        self._since = time.monotonic()
                        self._cond.notify_all()
        except (CameraError, CameraEnded) as exc:
            error = exc
        except Exception as exc:  # drivers raise what they like (cv2.error, RuntimeError)
            error = CameraError(f"{type(exc).__name__}: {without_password(str(exc))}")
        finally:
            if source is not None:
                try:  # this thread's own source, after its read returned
                    source.close()
                except Exception:
                    pass
            with self._cond:
                if session == self._session and error is not None:
                    self._error = error
                    self._cond.notify_all()

    def read(self) -> np.ndarray | None:
        """The newest frame; NoFrameYet when none came within `wait_s`, CameraError when none
        came for `stall_s` or the session failed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._seq > self._seen or self._error is not None,
                                       timeout=self.wait_s):
                limit = self.stall_s if self._seq else self.first_frame_s
                if time.monotonic() - self._since > limit:
                    raise CameraError(f"no frame for {limit:.0f}s")
                raise NoFrameYet()
            if self._seq > self._seen:
                self._seen = self._seq
                self.frame_at = self._arrived
                return self._frame
            raise self._error  # type: ignore[misc]

    def close(self) -> None:
        with self._cond:  # the session's thread stops after its read and closes its source
            self._session += 1
            self._frame = None
            self._cond.notify_all()


def make_source(spec: str, *, loop: bool = False, width: int = 0, height: int = 0) -> FrameSource:
    """`picamera2` | `opencv:<index|url|file>` | `files:<glob>`; ValueError for anything else.

    Live sources (the Pi camera, a USB index, a stream url) are wrapped in `LatestFrame`;
    a video file and image files are played frame by frame.
    """
    if spec == "picamera2":
        return LatestFrame(lambda: PiCameraSource(width, height))
    if spec.startswith("opencv:") and spec[7:]:
        target = spec[7:]
        source = OpenCVSource(target, width, height)
        return source if source._is_file else LatestFrame(lambda: OpenCVSource(target, width, height))
    if spec.startswith("files:") and spec[6:]:
        return FilesSource(spec[6:], loop=loop)
    raise ValueError(f"unknown camera source {url_without_password(spec)!r} (picamera2 | opencv:<...> | files:<glob>)")


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
        self.frame_at = 0.0  # perf_counter when the frame `read` returned last came from the camera

    def stuck_for_s(self) -> float:
        """How long a live source's earlier read has held the device without returning (0: none)."""
        return self.source.stuck_for_s() if isinstance(self.source, LatestFrame) else 0.0

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
                    if not isinstance(self.source, LatestFrame):  # a live one opens in its thread:
                        self.state.status = "ok"  # ok at its first frame
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
            except NoFrameYet:  # a live source with nothing new yet: the caller's loop turns
                if time.monotonic() >= deadline:
                    return None
                continue
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
            self.state.status = "ok"
            self._delay = self.retry_initial_s
            # when it arrived (a live source says; else now): a frame that waited counts its wait
            self.frame_at = getattr(self.source, "frame_at", 0.0) or time.perf_counter()
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
    return Camera(source, name=cam.name or url_without_password(cam.source), rate=cam.rate,
                  retry_initial_s=cam.retry_initial_s, retry_max_s=cam.retry_max_s)
