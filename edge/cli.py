"""`edge-verifier` command line: a thin dispatcher.

Each command lives in the module that owns its job. That module exposes
`add_arguments(parser)` (cheap: no heavy imports at module level) and `run(args) -> int`.
Commands print JSON on stdout where asked (`--json`) and progress on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# command path -> (module, help)
COMMANDS: dict[tuple[str, ...], tuple[str, str]] = {
    ("models", "build"): ("edge.modelpack.cli", "fetch, verify, convert and quantize the models into models/"),
    ("models", "calibrate"): ("edge.modelpack.calibrate_cli",
                              "maintainers: measure the int8 activation ranges into models/calibration.json"),
    ("models", "pull"): ("edge.daemon.pull_pack", "install the hub's model pack (no build needed on the edge)"),
    ("embed",): ("edge.vision.cli_embed", "detect and embed every face in images, one JSON line per image"),
    ("compare",): ("edge.vision.cli_compare", "compare two images (or --pairs FILE) and print the decision"),
    ("bench", "lfw"): ("edge.bench.lfw", "LFW 10-fold accuracy of the whole pipeline, int8 and fp32"),
    ("bench", "speed"): ("edge.bench.speed", "per-stage latency, int8 against fp32 (and --reference dlib)"),
    ("bench", "hub"): ("edge.bench.hub", "verify requests per second and latency against a hub on loopback"),
    ("bench", "liveness"): ("edge.bench.liveness",
                           "presentation-attack detection: APCER per attack type, BPCER, DET plot"),
    ("bench", "door"): ("edge.bench.door_wild", "open-set identification at a door on LFW or any identity folder, "
                        "by condition band with --degrade: FPIR, FNIR, DET plots"),
    ("bench", "decode-memory"): ("edge.bench.decode_memory",
                                 "peak RSS of a hub under concurrent detects of one large image"),
    ("bench", "daemon"): ("edge.bench.daemon", "frame-to-event latency, fps, RSS and cold start of the daemon"),
    ("bench", "door-io"): ("edge.bench.door_io", "frame -> lock relay energised (gpio on mock pins), p50/p99"),
    ("bench", "arch"): ("edge.bench.arch", "decision drift of an emulated Raspberry Pi (qemu cortex-a72) against x86"),
    ("bench", "pi-first-accept"): ("edge.bench.pi_first_accept",
                                  "by hand: an emulated Raspberry Pi with no models pulls the hub's pack and "
                                  "reaches its first accept"),
    ("bench", "matching"): ("edge.bench.matching",
                            "identify alone over N persons x K faces, per [identify] rule, side by side"),
    ("bench", "log"): ("edge.bench.access_log",
                       "access rules and log: evaluation cost, records lost with the hub killed, search time"),
    ("bench", "ui"): ("edge.bench.ui", "web console page latency with many persons (p50, p95)"),
    ("hub",): ("edge.hub.server", "serve the face API (hub role)"),
    ("run",): ("edge.daemon.main", "run the edge daemon: camera -> decisions -> MQTT"),
    ("config", "example"): ("edge.config_example", "print a complete commented example config"),
    ("door", "release"): ("edge.door.release", "leave the lock relay as a clean stop does, after any exit of the "
                          "daemon (the unit's ExecStopPost)"),
    ("edge-id",): ("edge.daemon.edge_id_cli", "print this edge's id, the one a hub key is bound to (edge config)"),
    ("log", "verify"): ("edge.daemon.access_log_cli", "check the edge's access log chain end to end (edge config)"),
    ("log", "search"): ("edge.hub.access_cli", "search the access log the edges uploaded (hub config)"),
    ("audit",): ("edge.hub.audit", "report look-alike persons and enrolled faces failing the quality gate (hub store)"),
    ("ui", "fetch"): ("edge.hub.ui.static", "fetch and check the web console's static files (htmx, stylesheet)"),
    ("enrol",): ("edge.hub.enrol_cli", "enrol persons from a folder per person or a CSV into the hub's store"),
    ("demo",): ("edge.dev.demo", "start a broker, a hub and a daemon on sample photos and show decisions"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-verifier", description=__doc__.splitlines()[0])
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    for path, (module_name, help_text) in COMMANDS.items():
        if len(path) == 1:
            sub = top.add_parser(path[0], help=help_text, description=help_text)
        else:
            if path[0] not in groups:
                group = top.add_parser(path[0], help=f"{path[0]} commands")
                groups[path[0]] = group.add_subparsers(dest="subcommand", required=True, metavar="SUBCOMMAND")
            sub = groups[path[0]].add_parser(path[1], help=help_text, description=help_text)
        sub.set_defaults(_module=module_name)
        _module(module_name).add_arguments(sub)
    return parser


def _module(name: str):
    return importlib.import_module(name)


def main(argv: list[str] | None = None) -> int:
    from edge.core.errors import StoreUnavailable
    from edge.core.sqlitedb import DamagedDatabase

    args = build_parser().parse_args(argv)
    try:
        return int(_module(args._module).run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except (DamagedDatabase, StoreUnavailable) as exc:  # any command: which store, what to do
        print(f"edge-verifier {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
