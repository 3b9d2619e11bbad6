"""`edge-verifier bench door-io --json`: how long from a frame to the lock relay energised.

The daemon's own parts, in this process: `Daemon.start()` with MQTT, the API and the hub off
and `[door] backend = "gpio"` on gpiozero's mock pins (a pin class that records when its level
changes), the gallery holding one enrolled person (Ben Afflek, three train photos embedded by
the same pipeline). Each run hands a held-out photo of him (decoded once, as a camera would
hand a frame) to the daemon's frame path (`FrameScorer.process`): detect, quality gate,
embed, liveness, track, decide, decision event, access rules, controller, relay pin. A scene
with no face follows each run (the track ends) and the door is locked again before the next.

    relay_ms              frame handed to the daemon -> relay pin changed, p50/p99
    decision_to_relay_ms  decision event published -> relay pin changed (rules, controller,
                          gpiozero), p50/p99
    card_read_ms          grant -> card read decrypted at a real libosdp control panel over a
                          pseudo-terminal (edge.bench.door_osdp.measure_card_read), p50/p99;
                          frame -> card read is frame -> decision plus this (the OSDP backend is
                          not yet wired into `[door]`, so the two are measured apart)

A mock pin changes in microseconds; on a Pi, lgpio's write adds tens of microseconds and the
relay's own pull-in time (5-15 ms for a typical module) is mechanical and not in these figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

FACES = {"person": "Ben_Afflek", "enrol": ["train_1.jpg", "train_2.jpg", "train_3.jpg"], "play": "val_1.jpg",
         "scene": "nonface/skimage_coffee.png"}
RELAY_PIN = 17


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edge.dev.localenv import shared_faces_dir

    parser.add_argument("--json", action="store_true", help="print the result as JSON (always JSON)")
    parser.add_argument("--runs", type=int, default=200, help="frames of the enrolled person (default 200)")
    parser.add_argument("--faces", type=Path, default=shared_faces_dir(), help="photo folder (../shared/faces)")
    parser.add_argument("--models-dir", type=Path, default=None, help="built models (default models/)")
    parser.add_argument("--precision", default="int8", help="model pack (default int8)")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (default: all cores)")
    parser.add_argument("--liveness", choices=("require", "off"), default="require",
                        help="liveness as on a door (require, decided on 1 frame) or off")
    parser.add_argument("--card-reads", type=int, default=100,
                        help="grants sent as OSDP card reads to a real libosdp panel (0: skip)")


def _recording_factory(changes: list[tuple[str, bool, float]]):
    """gpiozero's MockFactory whose pins record (pin name "GPIO<bcm>", level, perf_counter) at
    each change."""
    from gpiozero.pins.mock import MockFactory, MockPin

    class RecordingPin(MockPin):
        def _change_state(self, value):
            changed = super()._change_state(value)
            if changed:
                changes.append((self._info.name, bool(value), time.perf_counter()))
            return changed

    return MockFactory(pin_class=RecordingPin)


def _percentiles(values: list[float]) -> dict[str, float | int]:
    import numpy as np

    return {"p50": round(float(np.percentile(values, 50)), 2), "p99": round(float(np.percentile(values, 99)), 2),
            "max": round(max(values), 2), "n": len(values)}


def run(args) -> int:
    import cv2
    from gpiozero import Device

    from edge.core.matcher import Enrolled, Gallery
    from edge.daemon.config import EdgeSettings
    from edge.daemon.main import Daemon

    logging.basicConfig(level=logging.WARNING)
    load_start = round(os.getloadavg()[0], 2)
    person = args.faces / "five_celebrity" / FACES["person"]
    frame = cv2.imread(str(person / FACES["play"]))
    scene = cv2.imread(str(args.faces / FACES["scene"]))
    if frame is None or scene is None:
        raise SystemExit(f"photos not found under {args.faces}")
    changes: list[tuple[str, bool, float]] = []
    Device.pin_factory = _recording_factory(changes)
    with tempfile.TemporaryDirectory(prefix="bench-door-io-") as work:
        s = EdgeSettings(
            mqtt={"enabled": False}, api={"enabled": False}, storage={"path": work},
            vision={"models_dir": args.models_dir, "precision": args.precision, "threads": args.threads},
            camera={"source": f"files:{work}/none/*"}, tracker={"max_missed": 0, "settle_s": 0},
            liveness={"mode": args.liveness, "frames": 1},
            door={"backend": "gpio", "relay_pin": RELAY_PIN, "unlock_s": 0.05, "max_unlock_s": 1, "bounce_s": 0})
        daemon = Daemon(s)
        daemon.start()
        try:
            enrolled = []
            for i, name in enumerate(FACES["enrol"]):
                faces = daemon.pipeline.analyze(cv2.imread(str(person / name)))
                if faces:
                    enrolled.append(Enrolled("ben_afflek", str(i), faces[0].embedding, ("staff",), "Ben Afflek"))
            daemon._swap_gallery(Gallery(enrolled, daemon.thresholds, version="bench"))
            assert daemon.door is not None
            decided_at: list[float] = []
            link = daemon.door
            decided = link.decided

            def timed_decided(*a, **kw):
                decided_at.append(time.perf_counter())
                return decided(*a, **kw)

            link.decided = timed_decided  # type: ignore[method-assign]
            relay_ms, decision_ms, missed = [], [], 0
            for _ in range(args.runs + 3):  # 3 warm-up runs
                changes.clear()
                decided_at.clear()
                t_frame = time.perf_counter()
                daemon.scorer.process(frame.copy(), t_frame)
                rises = [t for pin, level, t in changes if pin == f"GPIO{RELAY_PIN}" and level]
                if rises and decided_at:
                    relay_ms.append((rises[0] - t_frame) * 1000)
                    decision_ms.append((rises[0] - decided_at[0]) * 1000)
                else:
                    missed += 1
                daemon.scorer.process(scene.copy(), time.perf_counter())  # he leaves: the track ends
                daemon.window.settle_due((t.id for t in daemon.tracker.tracks), False)
                time.sleep(0.06)  # past unlock_s
                daemon._tick_door()
            relay_ms, decision_ms = relay_ms[3:], decision_ms[3:]
        finally:
            daemon.shutdown()
    card_read: dict | None = None
    if args.card_reads > 0:
        from edge.bench.door_osdp import measure_card_read

        card_read = measure_card_read(args.card_reads)
    if not relay_ms:
        raise SystemExit(f"the relay never moved in {args.runs} runs (liveness {args.liveness}): nothing to report")
    result = {
        "relay_ms": _percentiles(relay_ms), "decision_to_relay_ms": _percentiles(decision_ms),
        "card_read_ms": card_read,
        "note": "card_read_ms: grant -> card read at a real libosdp panel (its poll period dominates); "
                "frame -> card read = relay_ms - decision_to_relay_ms + card_read_ms",
        "runs": args.runs, "runs_without_grant": missed, "liveness": args.liveness, "pack": args.precision,
        "threads": args.threads, "backend": "gpio on gpiozero mock pins",
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        # a shared machine: the tail is the scheduler's as much as the code's
        "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
    }
    print(json.dumps(result, indent=None if args.json else 2))
    return 0
