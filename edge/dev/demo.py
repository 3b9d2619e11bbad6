"""`edge-verifier demo` (what `make demo` runs): broker, hub and daemon on sample photos.

Starts a private mosquitto on a free loopback port, a hub (subprocess, temp storage), enrols
people through the cloud client, then runs the edge daemon (subprocess) whose `files:` camera
plays held-out photos of the enrolled people, a stranger and scenes without faces. Every
decision is printed as it arrives over MQTT; when the camera has played everything and the
outbox is empty, all processes are stopped and the temp directory removed. Bounded: at most
`--timeout` seconds.

Photos: ../shared/faces (five_celebrity train_* to enrol, val_1 to play, an LFW stranger, the
nonface scenes) and, when ../shared/faces/liveness is there, a presentation attack: a NUAA
subject enrolled from two live webcam frames, then one more live frame of them and a frame of
their printed photo held to the webcam. Liveness runs as on a door (mode require), on one
frame per track since the camera shows each photo once; the demo says so, and each decision
line shows its liveness verdict.

The door runs with `[door] backend = "none"` (no hardware: the state machine runs, nothing
moves): each grant prints a `DOOR unlocked 3 s for <person>` line. Once the camera has played
everything and the door has locked again, the demo opens the door without a grant (a line
`contact open` written to the none backend's simulated inputs) to show the forced-open alarm,
then closes it. Where ../shared/faces is absent, scikit-image's public-domain sample images are used
(its astronaut portrait enrolled and played back shifted and scaled; coffee, rocket and others
as scenes); nothing is ever copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from edge.dev.localenv import free_port, shared_faces_dir


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--faces", type=Path, default=shared_faces_dir(),
                        help="photo folder with five_celebrity/, lfw/, nonface/ (default ../shared/faces; "
                             "absent: scikit-image sample images)")
    parser.add_argument("--timeout", type=float, default=180.0, help="stop after this many seconds")
    parser.add_argument("--rate", type=float, default=2.0, help="camera frames per second")
    parser.add_argument("--models-dir", type=Path, default=None, help="built models (default models/)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (logs, stores)")
    parser.add_argument("--events", action="store_true",
                        help="print each decision as the full MQTT event JSON instead of one line")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _prepare_photos(faces: Path, work: Path) -> tuple[dict[str, list[Path]], Path, str]:
    """Enrolment photos per person, the camera folder, and a description of the set."""
    frames = work / "frames"
    frames.mkdir()
    enrol: dict[str, list[Path]] = {}
    if (faces / "five_celebrity").is_dir():
        people = sorted(p for p in (faces / "five_celebrity").iterdir() if p.is_dir())
        scenes = sorted((faces / "nonface").glob("*"))[::8] if (faces / "nonface").is_dir() else []
        n = 0
        for i, person in enumerate(people):
            pid = person.name.lower()
            enrol[pid] = sorted(person.glob("train_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))[:3]
            shutil.copy(person / "val_1.jpg", frames / f"{n:02d}_{pid}.jpg")
            n += 1
            if i < len(scenes):
                shutil.copy(scenes[i], frames / f"{n:02d}_scene{scenes[i].suffix}")
                n += 1
        stranger = faces / "lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg"
        if stranger.is_file():
            shutil.copy(stranger, frames / f"{n:02d}_stranger.jpg")
            n += 1
        described = f"{faces}: five_celebrity (enrol train_*, play val_1), an LFW stranger, scenes"
        nuaa = faces / "liveness" / "nuaa"
        if (nuaa / "print" / "0001").is_dir():
            enrol["nuaa_0001"] = [nuaa / "live" / "0001" / f for f in ("0001_00_00_01_0.jpg", "0001_00_00_01_63.jpg")]
            shutil.copy(nuaa / "live" / "0001" / "0001_00_00_02_0.jpg", frames / f"{n:02d}_nuaa_0001_live.jpg")
            if scenes:  # the person leaves before their print is shown: a new track
                shutil.copy(scenes[0], frames / f"{n + 1:02d}_scene{scenes[0].suffix}")
            shutil.copy(nuaa / "print" / "0001" / "0001_00_00_01_54.jpg", frames / f"{n + 2:02d}_nuaa_0001_print.jpg")
            described += "; NUAA subject 0001 live, then a print of their photo (a presentation attack)"
        return enrol, frames, described
    import cv2
    from skimage import data as skdata

    portrait = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    cv2.imwrite(str(work / "astronaut.jpg"), portrait)
    enrol["astronaut"] = [work / "astronaut.jpg"]
    # Played back as a different "frame": shifted and scaled, like a second camera shot.
    h, w = portrait.shape[:2]
    moved = cv2.resize(portrait[20:h, 10:w - 30], None, fx=0.8, fy=0.8)
    cv2.imwrite(str(frames / "01_astronaut.jpg"), moved)
    for i, name in enumerate(("coffee", "rocket", "chelsea")):
        img = getattr(skdata, name)()
        cv2.imwrite(str(frames / f"{i * 2:02d}_{name}.jpg"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return enrol, frames, "scikit-image sample images (public domain): astronaut portrait, scenes"


def _line(e: dict) -> str:
    who = e.get("person_id") or "-"
    if e.get("person_name"):
        who += f" ({e['person_name']})"
    if e.get("person_id") and e["decision"] != "accept":
        # not let in: the person is who was claimed (verify) or who the face came closest to
        who = ("claimed " if e["mode"] == "verify" else "closest ") + who
    score = "-" if e.get("score") is None else f"{e['score']:.3f}"
    conf = "-" if e.get("confidence") is None else f"{e['confidence']:.0f}"
    lat = e.get("latency_ms", {}).get("frame_to_event_ms")
    return (f"{e['timestamp'][11:19]}  {e['decision'].upper():9s} {who:32s} score {score:6s} "
            f"conf {conf:3s}  {e['mode']}/{e['source']}  {_liveness(e):22s} camera {Path(e['camera']).name}"
            + (f"  {lat:.0f} ms" if lat is not None else "")
            # a face not accepted at once was decided on its best frame when it left or waited long enough
            + (f" (best of {e['frames']} frames)" if (e.get("frames") or 1) > 1 else ""))


def _liveness(e: dict) -> str:
    """The decision's liveness as a door operator reads it."""
    live = e.get("liveness")
    if e.get("reason") == "presentation_attack":
        return f"ATTACK (p live {live['score']:.3f})"
    if not live:
        return "liveness off"
    if live.get("verdict") is None:
        return "liveness: no verdict"
    return f"{live['verdict']} (p live {live['score']:.3f})"


def run(args) -> int:
    from edge.dev.devstack import Broker, DaemonProc, EventFeed, HubProc, edge_config, write_toml

    work = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    parts: list = []  # started processes, stopped in reverse order
    deadline = time.monotonic() + args.timeout
    try:
        enrol, frames, described = _prepare_photos(args.faces, work)
        _say(f"photos: {described}")
        broker = Broker(work).start()
        parts.append(broker)
        _say(f"broker: mosquitto on {broker.host}:{broker.port}")
        hub = HubProc(work, models_dir=args.models_dir)
        # the door syncs with a key of its own, bound to it and its group: one taken off the door
        # enrols nobody and holds the faces of the staff group only
        door_key = hub.edge_key(work / "edge", ("staff",))
        parts.append(hub.start())
        _say(f"hub: {hub.url}")
        _enrol(hub, enrol)
        aport = free_port()
        cfg = write_toml(work / "edge.toml", edge_config(
            device="demo-door", source=f"files:{frames}/*", storage=work / "edge", api_port=aport,
            broker=broker, hub=door_key, models_dir=args.models_dir,
            camera={"name": "demo-camera", "rate": args.rate}, identify={"groups": ["staff"]},
            # Each photo is someone new in front of the door, judged on its one frame.
            tracker={"max_missed": 0}, liveness={"mode": "require", "frames": 1},
            door={"backend": "none", "unlock_s": 3, "simulate_inputs": str(work / "door-inputs")}),
            private=True)
        feed = EventFeed(broker.port, "edge-verifier/demo-door/event")
        door_feed = EventFeed(broker.port, "edge-verifier/demo-door/door/+/event")
        daemon = DaemonProc(cfg, aport, work / "edge.log", args=("--log-level", "WARNING")).start()
        parts.append(daemon)
        _say("liveness: mode require, decided on 1 frame per face (a door uses 5: the demo shows each photo "
             "once). The sample photos are digital photographs, not people in front of a camera: their "
             "verdicts say what the model makes of them (it looks for a print's or a screen's traces, which "
             "they lack), and a photo whose face fills the picture gets no verdict, so no decision (step back)")
        _say(f"daemon: camera plays {len(list(frames.iterdir()))} frames at {args.rate}/s; decisions:")
        events, health, door_shown = _follow(feed, daemon, deadline, args.events, work, door_feed)
        if daemon.proc.poll() is None:
            _force_the_door(door_feed, door_shown, daemon, work / "door-inputs", deadline, args.events)
        door_feed.close()
        door_events = door_feed.snapshot()
        accepted = sorted({e["person_id"] for e in events if e["decision"] == "accept"})
        attacks = sorted({e["person_id"] or "-" for e in events if e.get("reason") == "presentation_attack"})
        print(json.dumps({"decisions": len(events), "accepted": accepted, "refused_as_attacks": attacks,
                          "enrolled": sorted(enrol), "frames": health.get("camera", {}).get("frames"),
                          "door_grants": sorted({e["person_id"] for e in door_events if e["kind"] == "grant"}),
                          "door_alarms": [e["kind"] for e in door_events if e["kind"] in ALARMS]}))
        return 0
    except (RuntimeError, OSError) as exc:
        _say(f"demo failed: {exc} (logs in {work})")
        args.keep = True
        return 1
    finally:
        for part in reversed(parts):
            part.stop()
        if args.keep:
            _say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _enrol(hub, enrol: dict[str, list[Path]]) -> None:
    from edge.api.client import CloudApiError

    client = hub.client(timeout=60, retries=0)
    for pid, photos in enrol.items():
        done = 0
        for photo in photos:
            try:
                if done == 0:
                    client.newperson(pid, ["staff"], photo.read_bytes(), person_name=pid.replace("_", " ").title())
                else:
                    client.addface(pid, [photo.read_bytes()])
                done += 1
            except CloudApiError as exc:
                _say(f"  {photo.name}: not enrolled ({exc.code} {exc.message})")
        _say(f"enrolled {pid}: {done} photo(s)")
    client.close()


ALARMS = ("forced_open", "held_open", "tamper")


def door_line(e: dict) -> str | None:
    """One line per door event a person watching the door cares about (None: not shown)."""
    at = e["timestamp"][11:19]
    kind = e["kind"]
    if kind == "grant":
        return f"{at}  DOOR unlocked {e.get('unlock_s', 0):.0f} s for {e.get('person_id') or e.get('source')}"
    if kind == "deny":
        return f"{at}  DOOR stays locked for {e.get('person_id')}: {e.get('reason')}"
    if kind in ALARMS:
        return f"{at}  DOOR ALARM {kind.replace('_', ' ')}"
    if kind == "door_closed" and e.get("alarm_cleared"):
        return f"{at}  DOOR closed, alarm cleared"
    if kind == "door_state" and e["door_state"]["locked"]:  # an unlock has its grant line
        return f"{at}  DOOR locked ({e.get('reason', '')})"
    return None


def _print_door(door_feed, shown: int, full: bool) -> int:
    events = door_feed.snapshot()
    for e in events[shown:]:
        line = json.dumps(e) if full else door_line(e)
        if line:
            print(line, flush=True)
    return len(events)


def _force_the_door(door_feed, shown: int, daemon, inputs: Path, deadline: float, full: bool) -> None:
    """Open the door with no grant (the none backend's simulated contact), wait for the alarm,
    close it again."""
    while time.monotonic() < deadline:  # locked again after the last grant, and past its grace
        door = (daemon.health() or {}).get("door") or {}
        if door.get("state") == "locked":
            break
        shown = _print_door(door_feed, shown, full)
        time.sleep(0.2)
    time.sleep(1.5)  # [door] open_grace_s: an opening right after a grant still counts as its passage
    _say("opening the door without a grant (simulated contact):")
    for step, wanted in (("contact open", "forced_open"), ("contact closed", "door_closed")):
        with inputs.open("a") as f:
            f.write(step + "\n")
        while time.monotonic() < deadline and not any(e["kind"] == wanted for e in door_feed.snapshot()[shown:]):
            time.sleep(0.1)
    shown = _print_door(door_feed, shown, full)


def _follow(feed, daemon, deadline: float, full: bool, work: Path, door_feed=None) -> tuple[list[dict], dict, int]:
    """Print each decision (and door event) as it arrives, until the camera has played
    everything and every decision is out (or the daemon exits, or the deadline); the events and
    the last health, and how many door events were shown."""
    shown = door_shown = 0
    health: dict = {}
    events: list[dict] = []
    while time.monotonic() < deadline:
        events = feed.snapshot()
        while shown < len(events):
            print(json.dumps(events[shown]) if full else _line(events[shown]), flush=True)
            shown += 1
        if door_feed is not None:
            door_shown = _print_door(door_feed, door_shown, full)
        if daemon.proc.poll() is not None:
            _say(f"daemon exited with {daemon.proc.returncode}; see {work}/edge.log")
            break
        health = daemon.health() or health
        if health.get("camera", {}).get("status") == "ended" and health["mqtt"]["outbox_depth"] == 0 \
                and health.get("pending") == 0 and shown >= health.get("decisions", 0):
            break
        time.sleep(0.2)
    else:
        _say("demo timeout reached")
    feed.close()
    return events, health, door_shown
