"""`edge-verifier models build --emulate ARCH:CPU`: the same build under qemu user-mode emulation
of another CPU, to show that the build does not depend on the CPU it runs on.

The build (fp32 conversion, PRelu rewrites, padding, ORT's quantization pre-processing, the QDQ
quantizer fed the committed ranges, the uint8 PRelu rewrite) runs as `python -m
edge.modelpack.emulate` inside `qemu-ARCH -cpu CPU`: on x86_64 with this interpreter and its
packages (another x86 model exposes other instruction sets to numpy's and ORT's runtime
dispatch), on aarch64 with Debian's arm64 Python 3.11 and the aarch64 wheels of the same
versions (edge/modelpack/qemu.py sets both up, as `bench arch` uses them). Then the folder is checked
against the documented build (check.py), which is the native build's bytes.

Needs qemu-user 10 and, for aarch64, `dpkg --add-architecture arm64 && apt-get update`. Since the
build runs no calibration inference it takes minutes even emulated (measured on the AMD EPYC:
native 9 s; emulated build 62 s on cortex-a72, 73 s Nehalem, 101 s Haswell, 109 s
Skylake-Server), but it is a maintainer's check: run it by hand, not in CI. Note that qemu's TCG
does not implement AVX-512: a `-cpu Skylake-Server` guest reports AVX2 at most (the report's
`guest_simd` says what numpy saw).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

# What the build imports, for the aarch64 interpreter (their dependencies come along).
BUILD_PACKAGES = ("numpy", "onnxruntime", "onnx", "protobuf", "ml_dtypes", "opencv-python-headless")
ARCH_CACHE = Path.home() / ".cache" / "edge-verifier" / "arch"


def simd_features() -> list[str]:
    """The CPU features numpy's runtime dispatch found (on the emulated CPU under qemu)."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features
    except ImportError:  # pragma: no cover - numpy < 2
        from numpy.core._multiarray_umath import __cpu_features__ as features
    return sorted(name for name, on in features.items() if on)


def run_emulated(spec: str, models_dir: Path, manifest: Path, cache: Path, table: Path, log,
                 arch_cache: Path = ARCH_CACHE) -> dict:
    """Build into `models_dir` under `qemu-ARCH -cpu CPU` (spec "ARCH:CPU"); returns the report."""
    from edge.modelpack.check import check
    from edge.modelpack.qemu import guest_python

    prefix, path = guest_python(spec, arch_cache, BUILD_PACKAGES)
    models_dir.mkdir(parents=True, exist_ok=True)
    report_file = models_dir / ".emulated.json"
    cmd = [*prefix, "-m", "edge.modelpack.emulate", str(models_dir), str(manifest), str(cache), str(table),
           str(report_file)]
    env = {**os.environ, "PYTHONPATH": path, "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
    log(f"building under {' '.join(prefix[:3])} into {models_dir} (minutes: emulated)")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL)
    seconds = round(time.monotonic() - t0)
    guest = json.loads(report_file.read_text()) if report_file.is_file() else {}
    report = {"cpu": spec, "command": " ".join(prefix[:3]) + " python -m edge.modelpack.emulate ...",
              "exit": proc.returncode, "seconds": seconds, **guest}
    if proc.returncode == 0:
        meta = json.loads((models_dir / "models.json").read_text())
        report["files"] = {name: info["sha256"] for name, info in sorted(meta["models"].items())}
        report["packs"] = {name: pack["fingerprint"] for name, pack in meta["packs"].items()}
        report["problems_against_documented_build"] = check(models_dir)
    return report


def main(argv: list[str]) -> int:
    """The part that runs on the emulated CPU: MODELS_DIR MANIFEST CACHE TABLE REPORT."""
    import platform

    from edge.modelpack.build import _log, build

    models_dir, manifest, cache, table, report = (Path(a) for a in argv)
    features = simd_features()
    _log(f"guest {platform.machine()}: numpy sees {', '.join(features)}")
    t0 = time.monotonic()
    build(models_dir, manifest, cache, force=True, table_path=table)
    report.write_text(json.dumps({"guest_arch": platform.machine(), "guest_simd": features,
                                  "build_seconds": round(time.monotonic() - t0)}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
