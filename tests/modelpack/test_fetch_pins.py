"""The model archives are fetched by the registries' own clients and checked against their pinned
sha256. pip builds an sdist's metadata (runs its setup.py) while downloading it, before the
check here: a tampered archive on a mirror ran its code as whoever ran `make` (root, on a fresh
machine). The client is now told the pin itself and refuses the archive before running
anything of it (reproduced with a local index holding a tampered sdist and setuptools)."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from edge.modelpack import fetch
from edge.modelpack.manifest import Source

SETUP = b"""import os, pathlib
pathlib.Path(os.environ["TAMPERED_SETUP_RAN"]).write_text("ran")
from setuptools import setup
setup(name="tamperedpkg", version="0.0.1")
"""


@pytest.fixture(scope="module")
def local_index(tmp_path_factory) -> Path:
    """A folder pip reads as its only index: a tampered sdist, and setuptools as an sdist (what
    pip builds the tampered one with)."""
    index = tmp_path_factory.mktemp("index")
    got = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                          "setuptools", "-d", str(index)], capture_output=True, text=True, timeout=300)
    if got.returncode != 0:
        pytest.skip(f"setuptools could not be fetched from the package registry: {got.stderr[-300:]}")
    with tarfile.open(index / "tamperedpkg-0.0.1.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("tamperedpkg-0.0.1/setup.py")
        info.size = len(SETUP)
        tar.addfile(info, io.BytesIO(SETUP))
    return index


def test_a_tampered_sdist_is_refused_before_any_of_its_code_runs(local_index, tmp_path, monkeypatch):
    ran = tmp_path / "setup-ran"
    monkeypatch.setenv("TAMPERED_SETUP_RAN", str(ran))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(local_index))
    pinned = Source("tampered", "tamperedpkg", "pypi", "0.0.1", "MIT", "tamperedpkg-0.0.1.tar.gz", "ab" * 32, ())
    with pytest.raises(fetch.ModelBuildError) as refused:
        fetch.fetch_archive(pinned, tmp_path / "cache", lambda message: None)
    assert not ran.exists(), "the tampered archive's setup.py ran"
    assert "hash" in str(refused.value).lower() or "sha256" in str(refused.value)
    assert not (tmp_path / "cache" / pinned.archive).exists()


FAKE_SETUPTOOLS = b"""import os, pathlib
pathlib.Path(os.environ["FAKE_SETUPTOOLS_RAN"]).write_text("ran")
raise SystemExit("a setuptools no lock pinned")
"""


def _sdist(path: Path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_a_pinned_sdist_is_read_with_the_venvs_setuptools_never_one_the_index_serves(tmp_path, monkeypatch):
    """pip reads an sdist's metadata by building it: without `wheel` installed (it is not in the
    lock) the build was isolated, and pip fetched setuptools for it from the index, unhashed,
    and ran it. A mirror serving its own "setuptools 999" ran its code under `make models` with
    every archive's pin intact. The venv's setuptools, installed from the lock by its hash, reads
    them now."""
    import hashlib

    index = tmp_path / "index"
    index.mkdir()
    _sdist(index / "setuptools-999.0.tar.gz", {"setuptools-999.0/setup.py": FAKE_SETUPTOOLS})
    pkg = b"from setuptools import setup\nsetup(name='pinnedpkg', version='0.0.1')\n"
    _sdist(index / "pinnedpkg-0.0.1.tar.gz", {"pinnedpkg-0.0.1/setup.py": pkg})
    digest = hashlib.sha256((index / "pinnedpkg-0.0.1.tar.gz").read_bytes()).hexdigest()
    ran = tmp_path / "fake-setuptools-ran"
    monkeypatch.setenv("FAKE_SETUPTOOLS_RAN", str(ran))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    pinned = Source("pinned", "pinnedpkg", "pypi", "0.0.1", "MIT", "pinnedpkg-0.0.1.tar.gz", digest, ())
    archive = fetch.fetch_archive(pinned, tmp_path / "cache", lambda message: None)
    assert not ran.exists(), "the index's setuptools ran"
    assert hashlib.sha256(Path(archive).read_bytes()).hexdigest() == digest
