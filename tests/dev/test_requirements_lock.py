"""requirements.lock, from which `make venv` installs every package by its sha256 (pip
--require-hashes): it must still say what pyproject.toml asks for, on every platform and Python
the project supports, and be what this environment was installed from."""

from __future__ import annotations

import platform
import re
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

# The environments `make venv` must install on: Debian 12 / Raspberry Pi OS bookworm (3.11),
# Ubuntu 24.04 (3.12), Debian 13 / Raspberry Pi OS trixie (3.13); x86_64 and aarch64 (a Pi).
SUPPORTED = [{"python_version": v, "python_full_version": f"{v}.0", "platform_machine": m, "sys_platform": "linux",
              "platform_system": "Linux", "implementation_name": "cpython", "platform_python_implementation": "CPython",
              "os_name": "posix", "extra": ""}
             for v in ("3.11", "3.12", "3.13") for m in ("x86_64", "aarch64")]


def locked() -> list[tuple[Requirement, list[str]]]:
    """(name==version ; marker, its sha256 hashes) of every entry of the lock."""
    text = (ROOT / "requirements.lock").read_text()
    entries = []
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        if block.startswith("#") or not block.strip():
            continue
        head = block.split("\\", 1)[0].strip()
        entries.append((Requirement(head), re.findall(r"--hash=sha256:([0-9a-f]{64})", block)))
    return entries


def wanted() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in project["dependencies"] + extras["test"] + extras["build"]]


def pin(entries, name: str, env: dict) -> Version | None:
    for req, _ in entries:
        if canonicalize_name(req.name) == canonicalize_name(name) and (req.marker is None or req.marker.evaluate(env)):
            return Version(next(iter(req.specifier)).version)
    return None


def test_every_entry_is_pinned_with_hashes():
    entries = locked()
    assert len(entries) > 50
    for req, hashes in entries:
        assert len(req.specifier) == 1 and next(iter(req.specifier)).operator == "==", req
        assert hashes, f"{req} has no sha256"


@pytest.mark.parametrize("env", SUPPORTED, ids=lambda e: f"{e['python_version']}-{e['platform_machine']}")
def test_the_lock_holds_what_pyproject_asks_for_on_every_supported_platform(env):
    entries = locked()
    for req in wanted():
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        version = pin(entries, req.name, env)
        assert version is not None, f"{req.name} is not in requirements.lock for {env['python_version']}: make lock"
        assert req.specifier.contains(version, prereleases=True), \
            f"requirements.lock pins {req.name} {version}, pyproject.toml asks {req}: make lock"


def test_this_environment_was_installed_from_the_lock():
    entries = locked()
    env = {**SUPPORTED[0], "python_version": platform.python_version().rsplit(".", 1)[0],
           "python_full_version": platform.python_version(), "platform_machine": platform.machine()}
    differ = []
    for req, _ in entries:
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        try:
            installed = Version(metadata.version(req.name))
        except metadata.PackageNotFoundError:
            differ.append(f"{req.name} missing")
            continue
        if installed != Version(next(iter(req.specifier)).version):
            differ.append(f"{req.name} {installed}")
    assert not differ, f"not as locked (make venv): {differ}"


def tampered_wheel(folder: Path, name: str, version: str) -> None:
    """A wheel of `name` `version` as a mirror could serve it: its code writes a mark on import."""
    module = name.replace("-", "_")
    dist = f"{module}-{version}.dist-info"
    files = {f"{module}/__init__.py": "import os, pathlib\npathlib.Path(os.environ['TAMPERED']).write_text('ran')\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{dist}/RECORD"])
    with zipfile.ZipFile(folder / f"{module}-{version}-py3-none-any.whl", "w") as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def test_a_package_altered_on_the_mirror_is_refused_by_make_venv(tmp_path, monkeypatch):
    """`make venv` installed by version ranges: whoever controlled the package mirror at set-up
    ran code on the machine (as root, on a fresh one). It installs from the lock now, by hash:
    the same altered wheel is taken by a range and refused by the Makefile's install line."""
    recipe = next(line.strip() for line in (ROOT / "Makefile").read_text().splitlines()
                  if "pip install" in line and "requirements.lock" in line)
    flags = recipe.split("pip install", 1)[1].split()
    assert "--require-hashes" in flags  # what keeps the mirror out
    entry = next(block for block in re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "requirements.lock").read_text())
                 if block.startswith("tomli-w=="))
    version = entry.split("==", 1)[1].split()[0]
    index = tmp_path / "mirror"
    index.mkdir()
    tampered_wheel(index, "tomli-w", version)
    (tmp_path / "one.lock").write_text(entry + "\n")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(index))
    monkeypatch.setenv("PIP_CONSTRAINT", "")
    monkeypatch.setenv("TAMPERED", str(tmp_path / "ran"))

    def install(args: list[str], target: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), *args],
                              capture_output=True, text=True, timeout=120)

    by_range = install([f"tomli-w>={version}"], tmp_path / "ranges")
    assert by_range.returncode == 0 and (tmp_path / "ranges" / "tomli_w" / "__init__.py").exists()  # taken
    locked_args = [str(tmp_path / "one.lock") if a == "requirements.lock" else a for a in flags if a != "--quiet"]
    by_lock = install(locked_args, tmp_path / "locked")
    assert by_lock.returncode != 0 and "DO NOT MATCH THE HASHES" in by_lock.stderr, by_lock.stderr[-500:]
    assert not (tmp_path / "locked" / "tomli_w").exists()
