"""`edge-verifier models calibrate [--check]`: measure the int8 activation ranges, for maintainers.

Runs build 9's calibration (the manifest's calibration photos, their crops made by the fp32
detector and landmarks, ORT's histogram calibrator at the 99.999th percentile) for every int8
model and writes the ranges to the calibration table beside the manifest (models/calibration.json,
committed; table.py), which `models build` then quantizes from on every machine. Re-measuring
gives other ranges on another CPU, so a new table is a new build: bump BUILD_VERSION and the
liveness step version and re-measure the packs (edge/modelpack/check.py).

`--check` writes nothing and always exits 0 when it could measure: it prints, as JSON, how far
this machine's ranges are from the committed ones (the honest drift report).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_arguments(parser) -> None:
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="models folder whose manifest and cache to use (default: $EDGE_VERIFIER_MODELS "
                             "or <repo>/models)")
    parser.add_argument("--manifest", type=Path, default=None,
                        help="sources manifest (default: <models-dir>/manifest.toml, else the repository's)")
    parser.add_argument("--cache", type=Path, default=None, help="download cache (default: <models-dir>/cache)")
    parser.add_argument("--output", type=Path, default=None,
                        help="the table to write or compare with (default: calibration.json beside the manifest)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing: print JSON of how far this machine's ranges are from the table's")


def _log(msg: str) -> None:
    print(f"[models calibrate] {msg}", file=sys.stderr, flush=True)


def run(args) -> int:
    import time

    from edge.modelpack import table as tb
    from edge.modelpack.build import default_manifest
    from edge.modelpack.calibration import photos_fingerprint
    from edge.modelpack.errors import ModelBuildError
    from edge.modelpack.manifest import load_manifest
    from edge.modelpack.measure import machine, measure_ranges
    from edge.vision.pipeline import default_models_dir

    models_dir = Path(args.models_dir or default_models_dir())
    manifest = Path(args.manifest) if args.manifest else default_manifest(models_dir)
    output = Path(args.output) if args.output else tb.default_table(manifest)
    t0 = time.monotonic()
    try:
        sources = load_manifest(manifest)
        committed = tb.load_table(output) if args.check else None
        fresh = measure_ranges(sources, Path(args.cache) if args.cache else models_dir / "cache", _log)
    except ModelBuildError as exc:
        print(f"edge-verifier models calibrate: error: {exc}", file=sys.stderr)
        return 2
    photos, here = photos_fingerprint(sources), machine()
    if committed is not None:
        report = {"table": str(output), "committed": committed.measured, "this_machine": here,
                  "same_photos": committed.photos == photos, "models": tb.drift(committed, fresh),
                  "seconds": round(time.monotonic() - t0)}
        print(json.dumps(report, indent=2))
        return 0
    output.write_text(tb.dumps(photos, here, fresh))
    _log(f"wrote {output} ({sum(len(m.tensors) for m in fresh.values())} tensor ranges) in "
         f"{time.monotonic() - t0:.0f} s; the int8 files change: bump BUILD_VERSION and LIVENESS_BUILD_VERSION "
         "(edge/modelpack/versions.py), rebuild and update edge/modelpack/check.py")
    return 0
