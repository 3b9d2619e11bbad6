"""Images within the 40-megapixel cap that used to exhaust memory or CPU, sent to a real hub.

Each image is built here at test time: a 231 KB-class 16-bit PNG that decodes to hundreds of MB,
a progressive JPEG with hundreds of scans, and a burst of concurrent large decodes.
"""

from __future__ import annotations

import base64
import re
import struct
import threading
import zlib

import cv2
import numpy as np

from edge.core import errors
from edge.vision import image as image_mod
from tests.support.hub import post


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def sixteen_bit_png(width: int, height: int) -> bytes:
    """A black 16-bit RGB PNG, compressed row by row (never held decoded here)."""
    row = bytes(1 + width * 6)  # filter byte 0 + RGB x 2 bytes per sample
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def many_scan_jpeg(photo: np.ndarray, extra_scans: int) -> bytes:
    """A progressive JPEG whose smallest scan is repeated `extra_scans` times (libjpeg only warns
    about the inconsistent progression and decodes it all: each scan is a pass over the image)."""
    data = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert data.endswith(b"\xff\xd9")
    starts = [m.start() for m in re.finditer(b"\xff\xda", data)]
    ends = starts[1:] + [len(data) - 2]
    start, end = min(zip(starts, ends), key=lambda se: se[1] - se[0])
    return data[:-2] + data[start:end] * extra_scans + b"\xff\xd9"


def _detect(hub, blob: bytes) -> dict:
    return post(hub, "detect", json={"appid": hub.appid, "image": base64.b64encode(blob).decode(), "mode": 0})


def _detect_at_once(hub, blob: bytes, times: int, timeout_s: float) -> list[dict]:
    """`times` detects of `blob` sent together, one thread each; their answers."""
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(_detect(hub, blob))) for _ in range(times)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout_s)
    return results


def test_sixteen_bit_png_over_the_decode_budget_is_refused_by_the_hub(hub_server):
    # 36 MP: under the 40-megapixel cap, but 216 MB of 16-bit samples (and more to convert them)
    blob = sixteen_bit_png(6000, 6000)
    assert len(blob) < 400_000
    body = _detect(hub_server, blob)
    assert body["code"] == errors.IMAGE_DECODE_FAILED, body
    assert "budget" in body["message"]


def test_sixteen_bit_png_within_the_budget_still_decodes():
    img = image_mod.decode_image(sixteen_bit_png(400, 300))
    assert img.shape == (300, 400, 3) and img.dtype == np.uint8


def test_progressive_jpeg_with_hundreds_of_scans_is_refused_before_decoding(hub_server, photo):
    blob = many_scan_jpeg(photo, 400)
    assert len(blob) < 1_000_000 and image_mod._jpeg_scans(blob) > image_mod.MAX_JPEG_SCANS
    body = _detect(hub_server, blob)
    assert body["code"] == errors.IMAGE_DECODE_FAILED, body
    assert "scans" in body["message"]


def test_ordinary_progressive_jpeg_still_decodes(photo):
    blob = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    assert 2 <= image_mod._jpeg_scans(blob) <= 20
    assert image_mod.decode_image(blob).shape == photo.shape


def test_concurrent_decodes_are_capped(hub_server, photo):
    """Eight large detects at once: at most MAX_CONCURRENT_DECODES decode together."""
    big = cv2.resize(photo, (2600, 2600))
    blob = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 60])[1].tobytes()
    assert len(blob) < 1_500_000
    _detect(hub_server, blob)  # warm: models loaded
    image_mod.decode_slots.peak = 0
    results = _detect_at_once(hub_server, blob, 8, timeout_s=120)
    assert len(results) == 8 and all(r["code"] == 0 for r in results), results
    assert 1 <= image_mod.decode_slots.peak <= image_mod.MAX_CONCURRENT_DECODES
    assert image_mod.decode_slots.active == 0


def _status_mb(pid: int, key: str) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(key)


def test_a_burst_of_large_images_costs_at_most_the_slots_and_memory_returns(tmp_path, photo, models_dir):
    """A real hub process gets 8 concurrent detects of a 25-megapixel JPEG (75 MB decoded each):
    its peak RSS grows by what 2 slots cost, not 8 requests' worth, and falls back afterwards."""
    import secrets
    import subprocess
    import time

    from edge.dev.devstack import wait_healthy
    from tests.conftest import MODELS, free_port
    from tests.support.broker import EDGE_VERIFIER
    from tests.support.hub import APPID, SECRET_ID, HubServer

    port, key = free_port(), secrets.token_hex(16)
    cfg = tmp_path / "hub.toml"
    cfg.touch(mode=0o600)
    cfg.write_text(f'[server]\nport = {port}\n[storage]\npath = "{tmp_path}/hub.sqlite3"\nkeep_face_crops = false\n'
                   f'[[credentials]]\nappid = "{APPID}"\nsecret_id = "{SECRET_ID}"\nsecret_key = "{key}"\n'
                   f'[limits]\nrate_per_s = 0\n[vision]\nmodels_dir = "{MODELS}"\n')
    proc = subprocess.Popen([str(EDGE_VERIFIER), "hub", "--config", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    hub = HubServer(f"http://127.0.0.1:{port}", APPID, SECRET_ID, key, tmp_path / "hub.sqlite3")
    big = cv2.resize(photo, (5000, 5000), interpolation=cv2.INTER_NEAREST)
    blob = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 30])[1].tobytes()
    del big
    try:
        assert wait_healthy(port, proc, timeout=60)
        _detect(hub, blob)  # models loaded, one large image seen
        time.sleep(0.5)
        before = _status_mb(proc.pid, "VmRSS")
        peak_before = _status_mb(proc.pid, "VmHWM")
        results = _detect_at_once(hub, blob, 8, timeout_s=180)
        assert len(results) == 8 and all(r["code"] in (0, errors.NO_FACE) for r in results), results
        peak = _status_mb(proc.pid, "VmHWM")
        time.sleep(1.0)
        after = _status_mb(proc.pid, "VmRSS")
        # measured: +291 MB with 2 slots, +903 MB without them (8 requests each holding their image)
        assert max(peak, peak_before) - before < 500, (before, peak_before, peak, after)
        assert after - before < 150, (before, after)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_an_animated_png_or_webp_is_refused_before_decoding():
    """OpenCV decodes an animated PNG or WebP through four-channel buffers at full size: a
    233 KB 16-bit APNG within the budget took 401 MB where 115 MB were counted. Refused (-1400)."""
    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    png = png.tobytes()
    actl = _png_chunk(b"acTL", struct.pack(">II", 1, 0))  # one frame, played for ever
    apng = png[:33] + actl + png[33:]  # after the signature (8) and IHDR (25)
    assert image_mod.decode_image(png).shape == (8, 8, 3)
    for data in (apng, _animated_webp()):
        try:
            image_mod.decode_image(data)
        except errors.ApiError as exc:
            assert exc.code == errors.ILLEGAL_IMAGE_FORMAT and "animated" in exc.message
        else:
            raise AssertionError("an animated image was decoded")


def _animated_webp() -> bytes:
    """The header of an animated WebP: RIFF, WEBP, a VP8X chunk whose flags have the animation bit."""
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([0x02, 0, 0, 0]) + (99).to_bytes(3, "little") * 2
    anim = b"ANIM" + struct.pack("<I", 6) + bytes(6)
    body = b"WEBP" + vp8x + anim
    return b"RIFF" + struct.pack("<I", len(body)) + body


def test_a_jpeg_with_a_scan_per_colour_is_counted_as_keeping_its_coefficients(photo):
    """libjpeg keeps every coefficient of a JPEG whose first scan holds fewer colours than the
    frame, baseline or not: a 468 KB one of 6400x6240 took 343 MB where 229 (one byte a sample)
    were counted. Counted at two bytes a sample now, so that size is over the budget."""
    data = bytearray(cv2.imencode(".jpg", photo)[1].tobytes())  # baseline, one interleaved scan
    sof = next(i for m, i in image_mod._jpeg_segments(bytes(data)) if m in image_mod._SOF)
    sos = next(i for m, i in image_mod._jpeg_segments(bytes(data)) if m == 0xDA)
    assert image_mod._jpeg_header(bytes(data)).sample_bytes == 1  # interleaved: as before
    data[sos + 4] = 1  # the first scan: one colour of three
    assert image_mod._jpeg_header(bytes(data)).sample_bytes == 2
    data[sof + 5:sof + 9] = struct.pack(">HH", 6240, 6400)  # 6400x6240: 120 MB at one byte, 240 at two
    try:
        image_mod.decode_image(bytes(data))
    except errors.ApiError as exc:
        assert exc.code == errors.IMAGE_DECODE_FAILED and "budget" in exc.message
    else:
        raise AssertionError("decoded past the budget")
