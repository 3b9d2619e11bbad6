"""`edge-verifier config example {hub,edge}`: print a complete commented example config."""

from __future__ import annotations

import importlib
import sys


def add_arguments(parser) -> None:
    parser.add_argument("role", choices=["hub", "edge"], help="which role's configuration")


def run(args) -> int:
    module_name = "edge.hub.config" if args.role == "hub" else "edge.daemon.config"
    try:
        example = importlib.import_module(module_name).example_toml
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise  # a real import problem inside the module: show it
        example = None
    except AttributeError:
        example = None
    if example is None:
        print(f"edge-verifier config example {args.role}: {module_name}.example_toml is not available "
              "in this build (the edge daemon's settings module is missing)", file=sys.stderr)
        return 1
    sys.stdout.write(example())
    return 0
