"""`edge-verifier bench pi-first-accept`: an emulated Raspberry Pi 4 with an empty models folder
and only the hub's url and credentials reaches its first accept without building anything.

By hand, not in CI:

    edge-verifier bench pi-first-accept [--cache DIR] [--timeout-s 1800]

Native (this x86 machine): mosquitto and a hub with the five_celebrity people enrolled, one
photo each. Emulated (`qemu-aarch64 -cpu cortex-a72`, Debian's arm64 Python 3.11 as on Raspberry
Pi OS, and the aarch64 wheels of every runtime dependency at the versions installed here, fetched
as `edge-verifier bench arch` fetches its own): `edge-verifier run` with an empty
`[vision] models_dir` on a folder camera holding another photo of one of them. Prints JSON: the
files the edge pulled, its first decision event, and how long each step took. About 50x slower
than native under emulation; needs what `bench arch` needs (qemu-user 10, arm64 dpkg architecture).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from importlib.metadata import requires
from pathlib import Path

from edge.dev.localenv import shared_faces_dir


def runtime_packages() -> tuple[str, ...]:
    """The distribution names the edge needs at run time (no extras)."""
    names = []
    for req in requires("edge-verifier") or []:
        if "extra ==" not in req:
            names.append(req.split(">")[0].split("=")[0].split("<")[0].split(";")[0].strip())
    return tuple(names)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "edge-verifier" / "arch")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--faces", type=Path, default=shared_faces_dir())


def run(args) -> int:
    from edge.dev.devstack import Broker, EventFeed, HubProc, edge_config, enrol_five, write_toml
    from edge.dev.localenv import free_port
    from edge.modelpack.qemu import REPO, aarch64_wheels, arm64_sysroot, qemu

    started = time.monotonic()
    emulator = qemu("aarch64")
    root = arm64_sysroot(args.cache)
    wheels = aarch64_wheels(args.cache, runtime_packages())
    tmp = Path(tempfile.mkdtemp(prefix="emulated-pi-"))
    frames, empty = tmp / "frames", tmp / "models"
    frames.mkdir()
    person = min(p for p in (args.faces / "five_celebrity").iterdir() if p.is_dir())
    shutil.copy(person / "val_1.jpg", frames / "00.jpg")
    (tmp / "broker").mkdir()
    broker = Broker(tmp / "broker")
    broker.start()
    (tmp / "hub").mkdir()
    hub = HubProc(tmp / "hub")
    result: dict = {"edge_cpu": "qemu-aarch64 -cpu cortex-a72", "person": person.name}
    try:
        with hub.start().client(timeout=30.0, retries=0) as client:
            enrol_five(client, args.faces, photos=1)
            feed = EventFeed(broker.port, "edge-verifier/door-pi/event")
            # The daemon as the tests run it (short retries and backoff, liveness off: one photo,
            # one frame), with nothing in its models folder and the hub's pack to pull.
            settings = edge_config(
                device="door-pi", source=f"files:{frames}/*", storage=tmp / "data", api_port=free_port(),
                broker=broker, hub=hub,
                camera={"rate": 4, "loop": False, "retry_initial_s": 0.2, "retry_max_s": 0.5},
                mqtt={"keepalive": 5, "reconnect_max_s": 1}, vision={"threads": 1, "models_dir": str(empty)},
                liveness={"mode": "off"}, identify={"groups": ["staff"]})
            settings["hub"].update(timeout=120, retries=0, breaker_failures=2, breaker_reset_s=60, sync_interval_s=3600)
            cfg = write_toml(tmp / "edge.toml", settings, private=True)
            env = {**os.environ, "PYTHONPATH": f"{wheels}:{REPO}", "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1"}
            log_path = tmp / "edge.log"
            ready = time.monotonic()
            with log_path.open("wb") as log:
                edge = subprocess.Popen([emulator, "-cpu", "cortex-a72", "-L", str(root),
                                         str(root / "usr/bin/python3.11"), "-m", "edge", "run", "--config", str(cfg)],
                                        stdout=log, stderr=subprocess.STDOUT, env=env)
                try:
                    deadline = time.monotonic() + args.timeout_s
                    while not feed.snapshot() and time.monotonic() < deadline and edge.poll() is None:
                        time.sleep(1)
                finally:
                    edge.terminate()
                    try:
                        edge.wait(60)
                    except subprocess.TimeoutExpired:
                        edge.kill()
            feed.close()
            events = feed.snapshot()
            text = log_path.read_text(errors="replace")
            result.update({
                "setup_s": round(ready - started, 1),
                "first_event_s": round(time.monotonic() - ready, 1) if events else None,
                "pulled": sorted(p.name for p in empty.iterdir()) if empty.is_dir() else [],
                "built_anything": (empty / "cache").exists(),
                "first_event": {k: events[0].get(k) for k in ("decision", "person_id", "score", "source",
                                                              "fingerprints")} if events else None,
                "log_lines": [line for line in text.splitlines()
                              if any(w in line for w in ("pull", "installed", "models loaded", "decision"))][:12],
            })
    finally:
        hub.stop()
        broker.stop()
    print(json.dumps(result, indent=2))
    ok = result.get("first_event") and result["first_event"]["decision"] == "accept" and not result["built_anything"]
    return 0 if ok else 1
