"""qemu user-mode emulation of another CPU, for the maintainers' checks that run the project there.

`models build --emulate` shows that the build does not depend on the CPU; `bench arch` and
`bench pi-first-accept` show how far an emulated Raspberry Pi decides from the native machine.
Each needs qemu-user 10 (Debian 12's 7.2 crashes on `import onnxruntime`; bookworm-backports has
10) and, for aarch64, Debian's arm64 Python 3.11 (the Python of Raspberry Pi OS) with the aarch64
wheels of this environment's package versions. Everything fetched goes to a cache folder
(apt-get download, pip install --target), never into the repository.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ARM64_DEBS = [  # python3.11 and what its interpreter and standard library link against
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib", "libc6", "libexpat1", "zlib1g",
    "libffi8", "libssl3", "libbz2-1.0", "liblzma5", "libstdc++6", "libgcc-s1", "libuuid1", "libcrypt1",
    "libsqlite3-0", "libncursesw6", "libtinfo6", "libreadline8", "libnsl2", "libtirpc3", "libdb5.3",
]
REPO = Path(__file__).resolve().parents[2]


def _log(msg: str) -> None:
    print(f"[qemu] {msg}", file=sys.stderr, flush=True)


def qemu(arch: str) -> str:
    exe = shutil.which(f"qemu-{arch}")
    if exe is None:
        raise SystemExit(f"qemu-{arch} not found: install qemu-user 10 (Debian: from bookworm-backports)")
    version = re.search(r"version (\d+)", subprocess.run([exe, "--version"], capture_output=True, text=True,
                                                         check=False).stdout)
    if not version or int(version.group(1)) < 10:
        raise SystemExit(f"{exe} is older than 10 (7.2 crashes on `import onnxruntime`): install qemu-user 10")
    return exe


def arm64_sysroot(cache: Path) -> Path:
    """Debian's arm64 Python 3.11 unpacked under `cache` (for qemu's -L)."""
    root = cache / "sysroot-arm64"
    if (root / "usr/bin/python3.11").is_file():
        return root
    foreign = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True,
                             check=False).stdout.split()
    if "arm64" not in foreign:
        raise SystemExit("arm64 packages unavailable: run `dpkg --add-architecture arm64 && apt-get update` (as root)")
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    _log(f"fetching the arm64 Python 3.11 packages into {debs}")
    subprocess.run(["apt-get", "download", "-q", *(f"{d}:arm64" for d in ARM64_DEBS)], cwd=debs, check=True)
    tmp = cache / "sysroot-arm64.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    for deb in sorted(debs.glob("*.deb")):
        subprocess.run(["dpkg", "-x", str(deb), str(tmp)], check=True)
    tmp.replace(root)
    return root


PIPELINE_PACKAGES = ("numpy", "onnxruntime", "opencv-python-headless")


def aarch64_wheels(cache: Path, names: tuple[str, ...] = PIPELINE_PACKAGES) -> Path:
    """A folder for PYTHONPATH with the aarch64 wheels of `names` at this environment's versions."""
    import hashlib
    from importlib.metadata import version

    pins = [f"{name}=={version(name)}" for name in names]
    label = "-".join(p.split("==")[1] for p in pins)
    if names != PIPELINE_PACKAGES:
        label = hashlib.sha256(" ".join(pins).encode()).hexdigest()[:12]
    target = cache / ("site-aarch64-" + label)
    if target.is_dir():
        return target
    _log(f"fetching the aarch64 wheels of {len(pins)} packages: {', '.join(pins)}")
    platforms = [a for p in ("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64")
                 for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--target",
                    str(target) + ".partial", *platforms, "--python-version", "3.11", "--implementation", "cp",
                    "--only-binary=:all:", *pins], check=True)
    Path(str(target) + ".partial").replace(target)
    return target


def guest_python(spec: str, cache: Path, packages: tuple[str, ...] = PIPELINE_PACKAGES) -> tuple[list[str], str]:
    """The command prefix that runs Python under `qemu-ARCH -cpu CPU` (spec "ARCH:CPU") and the
    PYTHONPATH it needs. aarch64 runs Debian's arm64 interpreter with the aarch64 wheels of
    `packages`; x86_64 runs this interpreter and its packages on a CPU with other features, so
    numpy's and ONNX Runtime's runtime dispatch pick other kernels."""
    import os

    arch, _, cpu = spec.partition(":")
    emulator = qemu(arch)
    if arch == "aarch64":
        root = arm64_sysroot(cache)
        prefix = [emulator, "-cpu", cpu, "-L", str(root), str(root / "usr/bin/python3.11")]
        return prefix, os.pathsep.join([str(aarch64_wheels(cache, packages)), str(REPO)])
    prefix = [emulator, "-cpu", cpu, os.path.realpath(sys.executable)]
    return prefix, os.pathsep.join([str(REPO), *(p for p in sys.path if p.endswith("site-packages"))])
