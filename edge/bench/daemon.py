"""`edge-verifier bench daemon --json`: the daemon measured as it runs, end to end.

Runs the real daemon (subprocess) against a private mosquitto with a pre-synced local gallery,
its `files:` camera looping over photos of different people (so every frame is a new track and
gets a decision). Reports:
  latency_ms       frame read -> event committed to the outbox, local decisions, p50/p99
  fps_one_core     frames per second sustained, pinned to one core with one ORT thread
  fps_all_cores    the same with every core
  peak_rss_mb      the daemon's VmHWM over the latency run
  cold_start_s     process spawn -> first decision received over MQTT
  outbox_replay_per_s  events per second drained from a pre-filled outbox to the broker
  live_event_behind_backlog_ms  how long a decision made during that drain took to arrive
Bounded: about `--seconds` per run, four runs. Progress on stderr, JSON on stdout.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from edge.dev.localenv import free_port, shared_faces_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON (always JSON)")
    parser.add_argument("--seconds", type=float, default=12.0, help="length of each timed run")
    parser.add_argument("--faces", type=Path, default=shared_faces_dir(), help="photos (default ../shared/faces)")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--replay-events", type=int, default=100_000,
                        help="events pre-filled for the replay run (an outage's backlog)")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _photos(faces: Path, work: Path) -> list[Path]:
    import cv2

    out = work / "frames"
    out.mkdir()
    if (faces / "five_celebrity").is_dir():
        for person in sorted(p for p in (faces / "five_celebrity").iterdir() if p.is_dir()):
            shutil.copy(person / "val_1.jpg", out / f"{person.name}.jpg")
    else:
        from skimage import data as skdata

        img = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
        for i, scale in enumerate((1.0, 0.8, 0.6)):
            cv2.imwrite(str(out / f"astronaut{i}.jpg"), cv2.resize(img, None, fx=scale, fy=scale))
    return sorted(out.iterdir())


def _seed_cache(pipeline, photos: list[Path], data: Path) -> None:
    """A gallery as a sync would leave it: every photo enrolled as its own person."""
    from edge.daemon.cache import EdgeCache
    from edge.vision import load_image

    cache = EdgeCache(data / "cache.db")
    cache.reset(pipeline.fingerprint, "")
    changes = []
    for i, p in enumerate(photos):
        faces = pipeline.analyze(load_image(p), max_faces=1)
        if not faces:
            continue
        vec = np.asarray(faces[0].embedding, "<f4")
        changes += [{"seq": 2 * i + 1, "type": "person", "person_id": p.stem.lower(), "deleted": False,
                     "person_name": p.stem, "tag": "", "group_ids": ["bench"]},
                    {"seq": 2 * i + 2, "type": "face", "face_id": f"f{i}", "person_id": p.stem.lower(),
                     "deleted": False, "embedding": base64.b64encode(vec.tobytes()).decode(), "quality": 1.0}]
    cache.apply_page(changes, len(changes))
    cache.close()


def _daemon_run(work: Path, name: str, frames: Path, broker, *, rate: float, threads: int | None,
                seconds: float, models_dir: Path | None, pin_one_core: bool) -> dict:
    from edge.dev.devstack import DaemonProc, EventFeed, edge_config, health, write_toml

    data = work / name
    shutil.copytree(work / "seed", data)
    aport = free_port()
    cfg = write_toml(work / f"{name}.toml", edge_config(
        device=name, source=f"files:{frames}/*", storage=data, api_port=aport, broker=broker,
        prefix="bench", models_dir=models_dir, camera={"rate": rate, "loop": True},
        # Every frame shows someone else and a face that left ends its track at once: one
        # decision per frame, so each frame's latency is measured.
        tracker={"max_missed": 0}, vision={"threads": threads} if threads else {},
        # One frame per track never completes require's window: flag scores every frame (its
        # cost is in the figures) and decides as without liveness.
        liveness={"mode": "flag"}))
    wrap = ("taskset", "-c", "0") if pin_one_core and shutil.which("taskset") else ()
    events = EventFeed(broker.port, f"bench/{name}/event")
    daemon = DaemonProc(cfg, aport, work / f"{name}.log", args=("--log-level", "WARNING"), wrap=wrap)
    t_spawn = time.monotonic()
    daemon.start()
    try:
        daemon.wait_port(60)
        deadline = time.monotonic() + 60
        while not events.events and time.monotonic() < deadline:
            time.sleep(0.01)
        if not events.events:
            raise RuntimeError(f"no decision from the daemon; see {work}/{name}.log")
        cold = events.events[0][0] - t_spawn
        time.sleep(1.0)  # warm-up
        h0, t0 = health(aport), time.monotonic()
        time.sleep(seconds)
        h1, t1 = health(aport), time.monotonic()
        rss_kb = 0
        with open(f"/proc/{daemon.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    rss_kb = int(line.split()[1])
        fps = (h1["camera"]["frames"] - h0["camera"]["frames"]) / (t1 - t0)
        dps = (h1["decisions"] - h0["decisions"]) / (t1 - t0)
        lat = [e["latency_ms"]["frame_to_event_ms"] for e in events.snapshot()
               if e.get("source") == "local" and "frame_to_event_ms" in e.get("latency_ms", {})]
    finally:
        daemon.terminate()
        events.close()
    return {"cold_start_s": round(cold, 2), "fps": round(fps, 2), "peak_rss_mb": round(rss_kb / 1024, 1),
            "latencies": lat, "decisions_per_s": round(dps, 2)}


def _replay(work: Path, mport: int, n: int) -> dict:
    """Drain `n` pre-filled events (an outage's backlog) and, once a tenth has gone, decide one
    live event: how fast the backlog drains and how long the live one waits behind it."""
    from edge.daemon.config import MqttSettings
    from edge.daemon.decision_event import new_event
    from edge.daemon.mqtt import MqttPublisher
    from edge.daemon.outbox import Outbox
    from edge.dev.devstack import EventFeed

    box = Outbox(work / "replay" / "outbox.db", max_rows=max(n + 1, 100))
    payload = {"mode": "identify", "decision": "accept", "person_id": "p", "score": 0.7}
    rows = []
    for _ in range(n):
        e = new_event(**payload)
        rows.append((e["event_id"], "bench/replay/event", json.dumps(e).encode()))
    box._db.execute("BEGIN")
    box._db.executemany("INSERT INTO outbox (event_id, topic, payload) VALUES (?,?,?)", rows)
    box._db.execute("COMMIT")
    box.close()
    box = Outbox(work / "replay" / "outbox.db", max_rows=max(n + 1, 100))
    events = EventFeed(mport, "bench/replay/event")
    pub = MqttPublisher(MqttSettings(host="127.0.0.1", port=mport, prefix="bench"), "replay", box)
    t0 = time.monotonic()
    pub.start()
    live_at = live_ms = None
    while box.depth() and time.monotonic() - t0 < 600:
        if live_at is None and box.depth() <= n * 0.9:
            live_at = time.monotonic()
            pub.publish_event(new_event(**{**payload, "person_id": "live"}))
        if live_at is not None and live_ms is None:
            with events.lock:
                got = [t for t, e in events.events[-200:] if e.get("person_id") == "live"]
            if got:
                live_ms = (got[0] - live_at) * 1000
        time.sleep(0.002)
    dt = time.monotonic() - t0
    pub.stop()
    with events.lock:
        if live_ms is None:
            got = [t for t, e in events.events if e.get("person_id") == "live"]
            live_ms = (got[0] - live_at) * 1000 if got and live_at else None
    events.close()
    return {"per_s": n / dt, "live_ms": live_ms}


def run(args) -> int:
    from edge.dev.devstack import MOSQUITTO, Broker
    from edge.vision import Pipeline

    if not Path(MOSQUITTO).exists():
        _say("mosquitto is needed: apt-get install mosquitto")
        return 1
    work = Path(tempfile.mkdtemp(prefix="edge-bench-"))
    broker = None
    try:
        frames_list = _photos(args.faces, work)
        frames = frames_list[0].parent
        pipeline = Pipeline.load(args.models_dir)
        (work / "seed").mkdir()
        _seed_cache(pipeline, frames_list, work / "seed")
        del pipeline
        broker = Broker(work)
        # the bench's subscriber must not be where messages are dropped (mosquitto queues 1,000)
        broker.conf.write_text(broker.conf.read_text() + "max_queued_messages 0\n")
        broker.start()
        _say(f"latency run: 5 frames/s for {args.seconds:.0f}s, one ORT thread")
        lat_run = _daemon_run(work, "latency", frames, broker, rate=5, threads=1, seconds=args.seconds,
                              models_dir=args.models_dir, pin_one_core=False)
        _say("fps run, all cores")
        all_run = _daemon_run(work, "allcores", frames, broker, rate=120, threads=None, seconds=args.seconds,
                              models_dir=args.models_dir, pin_one_core=False)
        _say("fps run, one core")
        one_run = _daemon_run(work, "onecore", frames, broker, rate=120, threads=1, seconds=args.seconds,
                              models_dir=args.models_dir, pin_one_core=True)
        _say(f"outbox replay: {args.replay_events} events, one live decision behind them")
        replay = _replay(work, broker.port, args.replay_events)

        def pct(values: list[float]) -> dict:
            lat = np.array(values) if values else np.array([np.nan])
            return {"p50": round(float(np.percentile(lat, 50)), 1),
                    "p99": round(float(np.percentile(lat, 99)), 1), "n": len(values)}

        result = {
            "latency_ms": {**pct(lat_run["latencies"]),
                           "note": "frame read -> event in the outbox; local decisions, no cloud; "
                                   "5 frames/s, threads=1"},
            "latency_ms_saturated_one_core": pct(one_run["latencies"]),
            "latency_ms_saturated_all_cores": pct(all_run["latencies"]),
            "fps_one_core": one_run["fps"], "fps_all_cores": all_run["fps"],
            "decisions_per_s_one_core": one_run["decisions_per_s"],
            "cores": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "peak_rss_mb": max(lat_run["peak_rss_mb"], all_run["peak_rss_mb"], one_run["peak_rss_mb"]),
            "cold_start_s": lat_run["cold_start_s"],
            "cold_start_note": "process spawn -> first decision received over MQTT",
            "outbox_replay_per_s": round(replay["per_s"], 1),
            "outbox_replay_events": args.replay_events,
            "live_event_behind_backlog_ms": None if replay["live_ms"] is None else round(replay["live_ms"], 1),
            "frames": [p.name for p in frames_list],
        }
        print(json.dumps(result, indent=None if args.json else 2))
        return 0
    finally:
        if broker is not None:
            broker.stop()
        shutil.rmtree(work, ignore_errors=True)
