"""`edge-verifier models build [--models-dir DIR] [--calibration TABLE] [--force | --check | --emulate ARCH:CPU]`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="where to write the models (default: $EDGE_VERIFIER_MODELS or <repo>/models)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="sources manifest (default: <models-dir>/manifest.toml, else the repository's)")
    parser.add_argument("--cache", type=Path, default=None, help="download cache (default: <models-dir>/cache)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="the int8 ranges to quantize with (default: calibration.json beside the manifest; "
                             "`models calibrate` measures it)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the models are up to date")
    parser.add_argument("--json", action="store_true", help="print models.json on stdout when done")
    parser.add_argument("--check", action="store_true",
                        help="build nothing: say whether the folder is the documented build (exit 1 if not)")
    parser.add_argument("--emulate", metavar="ARCH:CPU", default=None,
                        help="maintainers: build under qemu user-mode emulation of that CPU (e.g. "
                             "aarch64:cortex-a72, x86_64:Haswell-noTSX) into --models-dir, then print JSON of its "
                             "files and whether it is the documented build")


def run(args) -> int:
    from edge.modelpack.build import build
    from edge.modelpack.errors import ModelBuildError
    from edge.vision.pipeline import default_models_dir

    if args.check:
        return _check(args.models_dir or default_models_dir())
    if args.emulate:
        return _emulate(args)
    try:
        meta = build(args.models_dir or default_models_dir(), args.manifest, args.cache, args.force, args.calibration)
    except ModelBuildError as exc:
        print(f"edge-verifier models build: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(meta, indent=2))
    return 0


def _emulate(args) -> int:
    from edge.modelpack.build import _log, default_manifest
    from edge.modelpack.emulate import run_emulated
    from edge.modelpack.table import default_table
    from edge.vision.pipeline import default_models_dir

    if args.models_dir is None or Path(args.models_dir).resolve() == Path(default_models_dir()).resolve():
        print("edge-verifier models build --emulate: give another --models-dir than the default one", file=sys.stderr)
        return 2
    models_dir = Path(args.models_dir).resolve()
    manifest = Path(args.manifest or default_manifest(Path(default_models_dir()))).resolve()
    cache = Path(args.cache or Path(default_models_dir()) / "cache").resolve()
    table = Path(args.calibration or default_table(manifest)).resolve()
    report = run_emulated(args.emulate, models_dir, manifest, cache, table, _log)
    print(json.dumps(report, indent=2))
    return 0 if report["exit"] == 0 else 1


def _check(models_dir: Path) -> int:
    from edge.modelpack.check import DOCUMENTED_BUILD, check

    problems = check(models_dir)
    for problem in problems:
        print(f"edge-verifier models build --check: {problem}", file=sys.stderr)
    if problems:
        print(f"{models_dir} is not the documented build (models build {DOCUMENTED_BUILD}): run `edge-verifier "
              "models build`, or `edge-verifier models pull` on an edge")
    else:
        print(f"{models_dir} is the documented build (models build {DOCUMENTED_BUILD})")
    return 1 if problems else 0
