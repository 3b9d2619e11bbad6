"""Turning untrusted image bytes into a BGR uint8 frame, or a documented error.

Images arrive from HTTP uploads, url downloads and files, so decoding is defensive:
the format is recognised by its signature (GIF and formats we do not accept: -1400), the
header's dimensions are read BEFORE decoding so a small file that claims 20000x20000 pixels
(a decompression bomb) is refused without allocating it (-1102), and a JPEG/PNG that stops
early is refused instead of being returned half grey (-1102).
"""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np

from edge.errors import (
    IMAGE_DECODE_FAILED,
    IMAGE_EMPTY,
    ILLEGAL_IMAGE_FORMAT,
    ApiError,
)

# 40 megapixels: above any camera frame or phone photo we expect, far below what would let
# one request take gigabytes (a 20000x20000 RGB image needs 1.2 GB decoded).
MAX_PIXELS = 40_000_000

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
    width, height = _header_size(kind, data)
    if width <= 0 or height <= 0:
        raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: {kind} header has no valid size")
    if width * height > MAX_PIXELS:
        raise ApiError(
            IMAGE_DECODE_FAILED,
            f"image decode failed: {width}x{height} exceeds the {MAX_PIXELS // 1_000_000} megapixel limit",
        )
    if kind == "JPEG" and not _jpeg_complete(data):
        raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: truncated JPEG (no end-of-image marker)")
    if kind == "PNG" and b"IEND" not in data[-64:]:
        raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: truncated PNG (no IEND chunk)")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if img is None or img.size == 0:
        raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: corrupt {kind} data")
    return _to_bgr8(img)


def load_image(path: str | Path) -> np.ndarray:
    """Read and decode an image file (same errors as decode_image; -1102 if unreadable)."""
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ApiError(IMAGE_DECODE_FAILED, f"image decode failed: cannot read {path}: {exc.strerror}") from None
    return decode_image(data)


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


def _header_size(kind: str, data: bytes) -> tuple[int, int]:
    """(width, height) from the header, without decoding pixels."""
    try:
        if kind == "PNG":
            if data[12:16] != b"IHDR":
                raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: PNG without IHDR header")
            return struct.unpack(">II", data[16:24])
        if kind == "JPEG":
            return _jpeg_size(data)
        if kind == "BMP":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if kind == "WebP":
            return _webp_size(data)
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


def _jpeg_size(data: bytes) -> tuple[int, int]:
    for marker, i in _jpeg_segments(data):
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
    raise ApiError(IMAGE_DECODE_FAILED, "image decode failed: JPEG without a frame header")


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
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ApiError(ILLEGAL_IMAGE_FORMAT, f"illegal image format: {img.dtype} pixels are not accepted")
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(img)
