"""`edge-verifier models pull --config edge.toml`: install the hub's model pack on this edge.

The pack is the one `[vision] precision` names, into `[vision] models_dir`; nothing is done
when that folder already holds it byte for byte. `edge-verifier run` does the same at start.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="the edge's TOML config ([hub] url and credentials, [vision])")
    parser.add_argument("--json", action="store_true", help="print the installed pack's listing on stdout")


def run(args: argparse.Namespace) -> int:
    from edge.api.client import CloudError
    from edge.core.settings import ConfigError
    from edge.daemon.config import load
    from edge.modelpack.share import PullError, pull_from_hub
    from edge.vision.pipeline import default_models_dir

    try:
        settings = load(args.config)
    except ConfigError as exc:
        print(f"edge-verifier models pull: error: {exc}", file=sys.stderr)
        return 2
    try:
        pack = pull_from_hub(settings.hub, settings.vision.models_dir or default_models_dir(),
                             settings.vision.precision)
    except (PullError, CloudError, OSError) as exc:
        print(f"edge-verifier models pull: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({k: v for k, v in pack.items() if k != "index"}, indent=2))
    return 0
