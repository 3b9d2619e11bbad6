"""Bad and unusual image bytes: each gives its documented code or a usable BGR frame."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from edge.core.errors import ILLEGAL_IMAGE_FORMAT, IMAGE_DECODE_FAILED, IMAGE_EMPTY, ApiError
from edge.vision import decode_image, load_image
from tests.conftest import code_of


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_zero_bytes_is_image_empty():
    assert code_of(decode_image, b"") == IMAGE_EMPTY


def test_gif_is_an_illegal_format(photo):
    assert code_of(decode_image, b"GIF89a" + b"\x01\x00\x01\x00" + bytes(20)) == ILLEGAL_IMAGE_FORMAT


def test_tiff_is_an_illegal_format():
    assert code_of(decode_image, b"II*\x00" + bytes(100)) == ILLEGAL_IMAGE_FORMAT


def test_random_bytes_are_undecodable():
    assert code_of(decode_image, np.random.default_rng(1).bytes(5000)) == IMAGE_DECODE_FAILED


def test_truncated_jpeg_is_undecodable(photo):
    data = cv2.imencode(".jpg", photo)[1].tobytes()
    assert code_of(decode_image, data[: len(data) // 2]) == IMAGE_DECODE_FAILED


def test_jpeg_cut_inside_its_header_is_undecodable(photo):
    data = cv2.imencode(".jpg", photo)[1].tobytes()
    assert code_of(decode_image, data[:40]) == IMAGE_DECODE_FAILED


def test_jpeg_cut_inside_its_frame_header_is_undecodable(photo):
    data = cv2.imencode(".jpg", photo)[1].tobytes()
    sof = data.index(b"\xff\xc0")
    for cut in range(sof + 4, sof + 10):  # the length is there, the precision/size/components are not
        assert code_of(decode_image, data[:cut]) == IMAGE_DECODE_FAILED


def test_jpeg_with_wrecked_headers_is_undecodable(photo):
    data = bytearray(cv2.imencode(".jpg", photo)[1].tobytes())
    data[2:200] = b"\x00" * 198  # wreck the headers after the SOI marker
    assert code_of(decode_image, bytes(data)) == IMAGE_DECODE_FAILED


def test_truncated_png_is_undecodable(photo):
    data = cv2.imencode(".png", photo)[1].tobytes()
    assert code_of(decode_image, data[: len(data) * 2 // 3]) == IMAGE_DECODE_FAILED


def test_png_with_corrupt_pixel_data_is_undecodable(photo):
    data = bytearray(cv2.imencode(".png", photo)[1].tobytes())
    mid = len(data) // 2
    data[mid : mid + 64] = bytes(64)
    assert code_of(decode_image, bytes(data)) == IMAGE_DECODE_FAILED


def test_png_claiming_20000_by_20000_is_refused_before_decoding():
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    data = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    with pytest.raises(ApiError) as err:
        decode_image(data)
    assert err.value.code == IMAGE_DECODE_FAILED
    assert "20000x20000" in err.value.message


def test_jpeg_claiming_20000_by_20000_is_refused_before_decoding(photo):
    data = bytearray(cv2.imencode(".jpg", photo[:8, :8])[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", 20000, 20000)
    with pytest.raises(ApiError) as err:
        decode_image(bytes(data))
    assert err.value.code == IMAGE_DECODE_FAILED
    assert "megapixel" in err.value.message


def test_grayscale_jpeg_becomes_three_channel_bgr(photo):
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    img = decode_image(cv2.imencode(".jpg", grey)[1].tobytes())
    assert img.shape == photo.shape and img.dtype == np.uint8
    assert np.array_equal(img[:, :, 0], img[:, :, 2])


def test_sixteen_bit_png_becomes_eight_bit(photo):
    deep = photo.astype(np.uint16) * 257
    img = decode_image(cv2.imencode(".png", deep)[1].tobytes())
    assert img.dtype == np.uint8
    assert np.abs(img.astype(int) - photo.astype(int)).max() <= 1


def test_png_with_alpha_drops_the_alpha(photo):
    rgba = cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)
    img = decode_image(cv2.imencode(".png", rgba)[1].tobytes())
    assert img.shape == photo.shape


def test_missing_file_is_undecodable(tmp_path):
    with pytest.raises(ApiError) as err:
        load_image(tmp_path / "absent.jpg")
    assert err.value.code == IMAGE_DECODE_FAILED


def test_real_jpeg_decodes_like_opencv(faces_dir):
    path = faces_dir / "lfw" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    assert np.array_equal(load_image(path), cv2.imread(str(path)))


@pytest.fixture(scope="module")
def small_jpeg(photo) -> bytes:
    return cv2.imencode(".jpg", cv2.resize(photo, (64, 64)))[1].tobytes()


def test_randomly_damaged_images_give_an_image_or_a_documented_code(small_jpeg, photo):
    """Fuzz: flipped bytes, cuts and junk never crash the decoder or escape as other errors."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    png = cv2.imencode(".png", cv2.resize(photo, (48, 48)))[1].tobytes()

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from([small_jpeg, png]),
           st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=8), st.integers(0, 10**6))
    def check(base, flips, cut):
        data = bytearray(base)
        for pos, value in flips:
            data[pos % len(data)] = value
        data = bytes(data[: max(1, cut % (len(data) + 1))])
        try:
            img = decode_image(data)
        except ApiError as exc:
            assert exc.code in (IMAGE_DECODE_FAILED, IMAGE_EMPTY, ILLEGAL_IMAGE_FORMAT)
        else:
            assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3

    check()
