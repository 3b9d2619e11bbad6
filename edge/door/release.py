"""`edge-verifier door release --state-dir DIR`: leave the lock relay as a clean stop leaves it.

A clean stop drives the relay to its locked level, then gives the pin back as an input: the
relay module is released (docs/door.md, "Lock types"). A daemon that dies without stopping
cleanly (`kill -9`, the out-of-memory killer under the unit's MemoryMax, the watchdog's SIGABRT,
a crash in a native library) gives nothing back, and Raspberry Pi OS keeps a GPIO output at the
level it had when its process died (the kernel's `persist_gpio_outputs`, on by default): a
fail-secure door killed while its relay was energised stayed unlocked until the daemon was
back, and for good while its start kept failing (a broken config, a damaged pack).

So the daemon writes down, when its door starts, which pin drives the relay and at which level
it is locked (`door-relay.json` in its data directory), and this command, which the unit runs
after every exit of the daemon (ExecStopPost), does what the clean stop does with it. It reads
no config: a config broken since the daemon started cannot stop it. The daemon does the same at
start, before anything else, for a previous run that ended without it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge.core.settings import write_private

if TYPE_CHECKING:
    from edge.door.settings import DoorSettings

log = logging.getLogger("edge.door")

RELAY_FILE = "door-relay.json"


def relay_of(s: DoorSettings) -> dict[str, Any] | None:
    """The relay `s` drives on this Pi's pins (backends gpio and osdp), None for the others."""
    from edge.door.controller import relay_level

    if s.backend not in ("gpio", "osdp"):
        return None
    return {"pin": s.relay_pin, "active_high": s.relay_active_high,
            "locked_level": relay_level(False, s.lock_type), "pin_factory": s.pin_factory}


def remember_relay(data_dir: Path, relay: dict[str, Any] | None) -> None:
    """Write down the relay this run drives ({pin, active_high, locked_level, pin_factory}), or
    forget it when this run drives none (another backend)."""
    path = Path(data_dir) / RELAY_FILE
    if relay is None:
        path.unlink(missing_ok=True)
    else:
        write_private(path, json.dumps(relay, sort_keys=True) + "\n")


def release_relay(relay: dict[str, Any], pin_factory: Any = None) -> None:
    """Drive the relay pin to its locked level, then give it back as an input: a clean stop's
    end. Raises what gpiozero raises (a pin held by a running daemon: GPIOPinInUse)."""
    from gpiozero import OutputDevice

    from edge.door.backends.gpio import pin_factory_named

    factory = pin_factory if pin_factory is not None else pin_factory_named(str(relay.get("pin_factory", "")))
    device = OutputDevice(int(relay["pin"]), active_high=bool(relay["active_high"]),
                          initial_value=bool(relay["locked_level"]), pin_factory=factory)
    device.close()


def release_remembered(data_dir: Path, pin_factory: Any = None) -> str:
    """Release the relay written down in `data_dir`; what was done, for the log."""
    path = Path(data_dir) / RELAY_FILE
    try:
        relay = json.loads(path.read_text())
    except FileNotFoundError:
        return "no relay written down: nothing to release"
    except (OSError, ValueError) as exc:
        raise RuntimeError(f"{path}: unreadable ({exc})") from None
    release_relay(relay, pin_factory)
    return f"relay pin {relay['pin']} driven to its locked level and released"


def release_left_over(data_dir: Path) -> None:
    """At start, before anything else: the relay of a previous run that ended without a clean
    stop or this command (run by hand, not under the unit) is released. Never fatal: the door's
    own start drives the pin again (a pin held by another process is the door's start error)."""
    try:
        message = release_remembered(data_dir)
    except Exception as exc:
        log.warning("the previous run's relay could not be released: %s: %s", type(exc).__name__, exc)
        return
    log.info("%s", message)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state-dir", default=os.environ.get("EDGE_VERIFIER_STORAGE__PATH", "/var/lib/edge-verifier"),
                        help="the daemon's data directory, its [storage] path (default: $EDGE_VERIFIER_STORAGE__PATH, "
                        "else /var/lib/edge-verifier)")


def run(args: argparse.Namespace) -> int:
    try:
        print(release_remembered(Path(args.state_dir)))
    except Exception as exc:  # a pin another process holds, no GPIO chip: say so, fail the unit's step
        print(f"edge-verifier door release: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0
