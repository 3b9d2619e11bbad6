"""Image files the command-line tools read (`edge-verifier enrol`, `embed`, `compare`): a FIFO
named x.jpg hung them, a link to /dev/zero read without end, a link loop or a NUL in a name ended a
whole batch with a traceback. Each is now the image error (-1102) for that file alone. And the
enrolment CSV: a field past the csv module's limit, or a NUL in a name, is said, not a traceback."""

from __future__ import annotations

import os
import threading

import pytest

from edge.core import errors
from edge.vision.image import MAX_FILE_BYTES, read_image_file


def _refused(path) -> str:
    """read_image_file(path)'s -1102 message, within 10 s (a FIFO's read would wait for ever)."""
    out: dict = {}

    def read() -> None:
        try:
            read_image_file(path)
        except errors.ApiError as exc:
            out["exc"] = exc

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(10)
    assert not t.is_alive(), f"reading {path!r} hung"
    assert out["exc"].code == errors.IMAGE_DECODE_FAILED
    return out["exc"].message


@pytest.mark.fast
def test_what_is_no_regular_image_file_is_an_image_error_not_a_hang_or_a_crash(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    assert "not a regular file" in _refused(fifo)
    (tmp_path / "zero.jpg").symlink_to("/dev/zero")
    assert "not a regular file" in _refused(tmp_path / "zero.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    assert "cannot read" in _refused(tmp_path / "loop.jpg")
    assert "cannot read" in _refused(str(tmp_path / "nul\x00.jpg"))
    huge = tmp_path / "huge.jpg"
    with open(huge, "wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)  # sparse: nothing written
    assert "over" in _refused(huge)
    (tmp_path / "ok.jpg").write_bytes(b"\xff\xd8 bytes")
    assert read_image_file(tmp_path / "ok.jpg") == b"\xff\xd8 bytes"


@pytest.mark.fast
def test_an_enrolment_csv_with_a_huge_field_or_a_nul_is_said_not_a_traceback(tmp_path):
    from edge.hub.enrol_cli import read_source

    big = tmp_path / "big.csv"
    big.write_text("path,person_id,name,group\nx.jpg,ann," + "a" * 200_000 + ",staff\n")
    with pytest.raises(ValueError, match="big.csv:2"):
        read_source(big, None)
    nul = tmp_path / "nul.csv"
    nul.write_text("x.jpg,ann,An\x00n,staff\n")
    with pytest.raises(ValueError, match="NUL"):
        read_source(nul, None)
