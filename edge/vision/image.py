"""Turning untrusted image bytes into a BGR uint8 frame, or a documented error.

Images arrive from HTTP uploads, url downloads and files, so decoding is defensive:
the format is recognised by its signature (GIF and formats we do not accept: -1400), the
header's dimensions are read BEFORE decoding so a small file that claims 20000x20000 pixels
(a decompression bomb) is refused without allocating it (-1102), and a JPEG/PNG that stops
early is refused instead of being returned half grey (-1102).

What a decode costs is bounded before it starts: the header gives width x height x channels x
bytes per sample (a 231 KB 16-bit PNG within the pixel cap would otherwise cost over 500 MB; a
progressive JPEG keeps a 2-byte coefficient per sample for the whole image), which must fit
MAX_DECODED_BYTES; a JPEG's scans are counted from its markers (each scan of a progressive JPEG
is a pass over the whole image: 20,000 of them in 1.4 MB cost minutes of CPU); and at most
MAX_CONCURRENT_DECODES decodes run at once per process, so a burst of requests queues instead of
multiplying the peak (services hold the slot while they analyse the full-size image too).
"""

from __future__ import annotations

import os
import stat
import struct
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.errors import (
    ILLEGAL_IMAGE_FORMAT,
    IMAGE_DECODE_FAILED,
    IMAGE_EMPTY,
    ApiError,
)

# 40 megapixels: above any camera frame or phone photo we expect, far below what would let
# one request take gigabytes (a 20000x20000 RGB image needs 1.2 GB decoded).
MAX_PIXELS = 40_000_000
# What one decoded image may hold: a 40-megapixel 8-bit colour image. 16-bit or progressive images
# get half the pixels (their samples cost two bytes while decoding). cv2.imdecode briefly holds a
# second copy of its output (measured: +224 MB peak for a 39 MP image, colour or grey), so a slot
# costs about twice this at its peak (docs/security.md, "Limits", with the measuring command).
MAX_DECODED_BYTES = MAX_PIXELS * 3
# Progressive JPEGs from cameras and encoders use about 10 scans (libjpeg's default script: 10,
# mozjpeg's: up to ~ 20); each one is a full pass over the image.
MAX_JPEG_SCANS = 100
# Decodes running at once in this process (HTTP worker threads wait for a slot, up to
# DECODE_WAIT_S, then get -1102): caps the decode memory at MAX_CONCURRENT_DECODES x the budget.
MAX_CONCURRENT_DECODES = 2
DECODE_WAIT_S = 30.0

_JPEG = b"\xff\xd8\xff"
_PNG = b"\x89PNG\r\n\x1a\n"
_GIF = (b"GIF87a", b"GIF89a")
_BMP = b"BM"
# Recognised so that they get -1400 ("a format we do not accept") rather than -1102.
_REFUSED = {
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
    b"8BPS": "PSD",
}


@dataclass(frozen=True)
class Header:
    """What the header says a decode will cost."""

    width: int
    height: int
    channels: int  # samples per pixel once decoded (at least the 3 of the BGR output)
    sample_bytes: int  # 2 for 16-bit samples and for a progressive JPEG's coefficient buffer

    @property
    def decoded_bytes(self) -> int:
        return self.width * self.height * self.channels * self.sample_bytes


class _DecodeSlots:
    """A counting semaphore over full-size images being decoded or analysed, re-entrant per
    thread (a service holds a slot around decode + detect + embed; decode_image inside it takes
    no second one), recording the highest number held at once."""

    def __init__(self, slots: int):
        self._sem = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._mine = threading.local()
        self.active = 0
        self.peak = 0

    def __enter__(self) -> None:
        depth = getattr(self._mine, "depth", 0)
        if depth == 0:
            if not self._sem.acquire(timeout=DECODE_WAIT_S):
                raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: decoder busy for {DECODE_WAIT_S:g} s")
            with self._lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
        self._mine.depth = depth + 1

    def __exit__(self, *exc) -> None:
        self._mine.depth -= 1
        if self._mine.depth == 0:
            with self._lock:
                self.active -= 1
            self._sem.release()


# Hold it around the whole work on a decoded image (decode, detect, embed): the decoded
# full-size arrays then exist MAX_CONCURRENT_DECODES at a time, not one per request in flight.
decode_slots = _DecodeSlots(MAX_CONCURRENT_DECODES)


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG, PNG, BMP or WebP bytes to a BGR uint8 array (H, W, 3).

    Grayscale, 16-bit and alpha images are converted; EXIF orientation is applied.
    Raises ApiError(-1300) for no bytes, ApiError(-1400) for GIF and formats we do not
    accept, ApiError(-1102) for corrupt, truncated, undecodable or too large images.
    """
    if not data:
        raise ApiError(IMAGE_EMPTY, "image empty: zero bytes")
    data = bytes(data)
    kind = _sniff(data)
    if _animated(kind, data):
        # OpenCV decodes an animated PNG or WebP through buffers of four channels at full size:
        # 2 to 3.5 times what the header's budget counted (401 MB for a 233 KB 16-bit APNG).
        raise ApiError(ILLEGAL_IMAGE_FORMAT, f"illegal image format: an animated {kind} is not accepted")
    head = _header(kind, data)
    width, height = head.width, head.height
    if width <= 0 or height <= 0:
        raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: {kind} header has no valid size")
    if width * height > MAX_PIXELS:
        raise ApiError(
            IMAGE_DECODE_FAILED,
            f"image decode failed: {width}x{height} exceeds the {MAX_PIXELS // 1_000_000} megapixel limit",
        )
    if head.decoded_bytes > MAX_DECODED_BYTES:
        raise ApiError(
            IMAGE_DECODE_FAILED,
            f"image decode failed: {width}x{height}x{head.channels} at {head.sample_bytes} bytes per sample "
            f"needs {head.decoded_bytes // 1_000_000} MB to decode, "
            f"over the {MAX_DECODED_BYTES // 1_000_000} MB budget",
        )
    if kind == "JPEG":
        scans = _jpeg_scans(data)
        if scans > MAX_JPEG_SCANS:
            raise ApiError(IMAGE_DECODE_FAILED,
                           f"image decode failed: JPEG with {scans} scans (at most {MAX_JPEG_SCANS})")
        if not _jpeg_complete(data):
            raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: truncated JPEG (no end-of-image marker)")
    if kind == "PNG" and b"IEND" not in data[-64:]:
        raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: truncated PNG (no IEND chunk)")
    buf = np.frombuffer(data, dtype=np.uint8)
    with decode_slots:
        # IMREAD_COLOR without ANYDEPTH: libpng strips 16-bit samples to 8 while decoding, so no
        # 16-bit copy of the image is ever held.
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
        if img is None or img.size == 0:
            raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: corrupt {kind} data")
        return _to_bgr8(img)


def load_image(path: str | Path) -> np.ndarray:
    """Read and decode an image file (same errors as decode_image; -1102 if unreadable)."""
    return decode_image(read_image_file(path))


# The largest image file read from disk (a camera's photo is a few MB).
MAX_FILE_BYTES = 50 << 20


def read_image_file(path: str | Path) -> bytes:
    """The bytes of an image file; ApiError -1102 for anything that is not a regular file of at
    most MAX_FILE_BYTES or cannot be read. A FIFO named x.jpg hung the CLIs, a link to /dev/zero
    read without end, and a link loop or a NUL in a name ended a whole batch with a traceback."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO's open does not wait for a writer
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: {path} is not a regular file")
            if st.st_size > MAX_FILE_BYTES:
                raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: {path} is over {MAX_FILE_BYTES >> 20} MB")
            return fh.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    except OSError as exc:
        raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # a NUL in the path
        raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: cannot read {path!r}: {exc}") from None


def _sniff(data: bytes) -> str:
    if data.startswith(_JPEG):
        return "JPEG"
    if data.startswith(_PNG):
        return "PNG"
    if data.startswith(_GIF):
        raise ApiError(ILLEGAL_IMAGE_FORMAT, "illegal image format: GIF is not accepted")
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data.startswith(_BMP) and len(data) >= 26:
        return "BMP"
    for magic, name in _REFUSED.items():
        if data.startswith(magic):
            raise ApiError(ILLEGAL_IMAGE_FORMAT, f"illegal image format: {name} is not accepted (use JPEG or PNG)")
    raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: not a recognised image (JPEG, PNG, BMP, WebP)")


# PNG colour type -> samples per pixel (0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA)
_PNG_CHANNELS = {0: 1, 2: 3, 3: 3, 4: 2, 6: 4}


def _header(kind: str, data: bytes) -> Header:
    """Size and sample layout from the header, without decoding pixels."""
    try:
        if kind == "PNG":
            if data[12:16] != b"IHDR" or len(data) < 26:
                raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: PNG without IHDR header")
            w, h = struct.unpack(">II", data[16:24])
            depth, colour = data[24], data[25]
            return Header(w, h, max(3, _PNG_CHANNELS.get(colour, 4)), 2 if depth > 8 else 1)
        if kind == "JPEG":
            return _jpeg_header(data)
        if kind == "BMP":
            w, h = struct.unpack("<ii", data[18:26])
            return Header(abs(w), abs(h), 4, 1)
        if kind == "WebP":
            w, h = _webp_size(data)
            return Header(w, h, 4, 1)
    except struct.error:
        pass
    raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: truncated {kind} header")


# Start-of-frame markers carry the dimensions (C4 DHT, C8 JPG, CC DAC are not frames).
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_segments(data: bytes):
    """Yield (marker, offset) of each header segment up to and including SOS."""
    i = 2
    n = len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: corrupt JPEG marker")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            i += 2
            continue
        (length,) = struct.unpack(">H", data[i + 2 : i + 4])
        yield marker, i
        if marker == 0xDA:
            return
        i += 2 + length
    raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: truncated JPEG header")


# Progressive (C2, C6, CA, CE) and 12-bit-capable lossless/extended frames keep the whole image's
# coefficients while decoding.
_SOF_BUFFERED = {0xC2, 0xC6, 0xCA, 0xCE}


def _jpeg_header(data: bytes) -> Header:
    frame: tuple[int, int, int, bool] | None = None
    for marker, i in _jpeg_segments(data):
        if marker in _SOF and frame is None:
            if i + 10 > len(data):
                raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: truncated JPEG frame header")
            precision = data[i + 4]
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            frame = (width, height, data[i + 9], marker in _SOF_BUFFERED or precision > 8)
        elif marker == 0xDA and frame is not None:
            width, height, components, buffered = frame
            # A first scan of fewer components than the frame (one scan per colour, baseline
            # or not) makes libjpeg keep every coefficient too: 343 MB where 229 were counted.
            if i + 5 <= len(data) and data[i + 4] < components:
                buffered = True
            return Header(width, height, max(3, components), 2 if buffered else 1)
    if frame is not None:  # no scan: the decoder says what is wrong
        width, height, components, buffered = frame
        return Header(width, height, max(3, components), 2 if buffered else 1)
    raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: JPEG without a frame header")


def _animated(kind: str, data: bytes) -> bool:
    """An animated PNG (its acTL chunk comes before the first IDAT) or WebP (VP8X's animation flag)."""
    if kind == "PNG":
        idat = data.find(b"IDAT")
        return b"acTL" in data[:idat if idat >= 0 else len(data)]
    if kind == "WebP":
        return data[12:16] == b"VP8X" and len(data) > 20 and bool(data[20] & 0x02)
    return False


def _jpeg_scans(data: bytes) -> int:
    """How many start-of-scan markers the JPEG has, found by walking its markers.

    Entropy-coded data cannot contain FF followed by anything but 00 (stuffing) or a restart
    marker, so after each scan the next FF xx is the next marker. Stops counting past the limit.
    """
    scans = 0
    for marker, i in _jpeg_segments(data):
        if marker == 0xDA:
            scans = 1
            pos = i + 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
            break
    else:
        return 0
    n = len(data)
    while scans <= MAX_JPEG_SCANS:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= n:
            return scans
        marker = data[pos + 1]
        if marker == 0x00 or marker == 0xFF or 0xD0 <= marker <= 0xD7:
            pos += 1 if marker == 0xFF else 2
            continue
        if marker == 0xD9:  # end of image
            return scans
        if marker == 0xDA:
            scans += 1
        if pos + 4 > n:
            return scans
        pos += 2 + struct.unpack(">H", data[pos + 2 : pos + 4])[0]
    return scans


def _jpeg_complete(data: bytes) -> bool:
    """True if the end-of-image marker follows the scan data of the main image.

    Byte stuffing guarantees FF D9 cannot occur inside entropy-coded data, and searching only
    after the main image's first SOS skips the EOI of an embedded EXIF thumbnail.
    """
    sos = max(i for marker, i in _jpeg_segments(data) if marker == 0xDA)
    return data.rfind(b"\xff\xd9") > sos


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    if chunk == b"VP8L":
        b = data[21:25]
        bits = int.from_bytes(b, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        w = int.from_bytes(data[24:27], "little") + 1
        h = int.from_bytes(data[27:30], "little") + 1
        return w, h
    raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: unknown WebP chunk")


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        raise ApiError(ILLEGAL_IMAGE_FORMAT, f"illegal image format: {img.dtype} pixels are not accepted")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)
