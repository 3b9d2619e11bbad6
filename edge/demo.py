"""`edge-verifier demo` (what `make demo` runs): broker, hub and daemon on sample photos.

Starts a private mosquitto on a free loopback port, a hub (subprocess, temp storage), enrols
people through the cloud client, then runs the edge daemon (subprocess) whose `files:` camera
plays held-out photos of the enrolled people, a stranger and scenes without faces. Every
decision is printed as it arrives over MQTT; when the camera has played everything and the
outbox is empty, all processes are stopped and the temp directory removed. Bounded: at most
`--timeout` seconds.

Photos: ../shared/faces (five_celebrity train_* to enrol, val_1 to play, an LFW stranger, the
nonface scenes). Where that is absent, scikit-image's public-domain sample images are used
(its astronaut portrait enrolled and played back shifted and scaled; coffee, rocket and others
as scenes); nothing is ever copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from edge.localenv import free_port, shared_faces_dir


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


def _write_private(path: Path, text: str) -> None:
    """Write a config that holds a secret key: mode 0600, as the hub and the daemon require."""
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {timeout:.0f}s")


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
        return enrol, frames, f"{faces}: five_celebrity (enrol train_*, play val_1), an LFW stranger, scenes"
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
            f"conf {conf:3s}  {e['mode']}/{e['source']}  camera {Path(e['camera']).name}"
            + (f"  {lat:.0f} ms" if lat is not None else "")
            # a face not accepted at once was decided on its best frame when it left or waited long enough
            + (f" (best of {e['frames']} frames)" if (e.get("frames") or 1) > 1 else ""))


def run(args) -> int:
    mosquitto = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(mosquitto).exists():
        _say("mosquitto is needed for the demo: apt-get install mosquitto (make demo does it)")
        return 1
    exe = str(Path(sys.executable).with_name("edge-verifier"))
    cmd = [exe] if Path(exe).exists() else [sys.executable, "-m", "edge"]
    work = Path(tempfile.mkdtemp(prefix="edge-demo-"))
    procs: list[subprocess.Popen] = []
    deadline = time.monotonic() + args.timeout
    try:
        enrol, frames, described = _prepare_photos(args.faces, work)
        _say(f"photos: {described}")
        # 1. broker
        mport = free_port()
        (work / "mosquitto.conf").write_text(
            f"listener {mport} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            + ("user root\n" if os.geteuid() == 0 else ""))
        procs.append(subprocess.Popen([mosquitto, "-c", str(work / "mosquitto.conf")],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_port(mport, procs[-1], "mosquitto", 10)
        _say(f"broker: mosquitto on 127.0.0.1:{mport}")
        # 2. hub
        hport = free_port()
        appid, sid, key = "100001", "AKIDdemo" + secrets.token_hex(8), secrets.token_hex(16)
        models = f'models_dir = "{args.models_dir}"\n' if args.models_dir else ""
        _write_private(work / "hub.toml",
            f'[server]\nhost = "127.0.0.1"\nport = {hport}\n[storage]\npath = "{work}/hub.sqlite3"\n'
            f'[[credentials]]\nappid = "{appid}"\nsecret_id = "{sid}"\nsecret_key = "{key}"\n'
            f"[vision]\n{models}")
        hub_log = (work / "hub.log").open("wb")
        procs.append(subprocess.Popen(cmd + ["hub", "--config", str(work / "hub.toml"), "--log-level", "warning"],
                                      stdout=hub_log, stderr=subprocess.STDOUT))
        _wait_port(hport, procs[-1], "hub", 60)
        hub_url = f"http://127.0.0.1:{hport}"
        _say(f"hub: {hub_url}")
        # 3. enrol
        from edge.cloud import CloudApiError, CloudClient

        client = CloudClient(hub_url, appid, sid, key, timeout=60, retries=0)
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
        # 4. daemon
        aport = free_port()
        _write_private(work / "edge.toml",
            f'[device]\nid = "demo-door"\n[camera]\nsource = "files:{frames}/*"\nname = "demo-camera"\n'
            f"rate = {args.rate}\n[identify]\ngroups = [\"staff\"]\n"
            f'[mqtt]\nhost = "127.0.0.1"\nport = {mport}\nprefix = "edge-verifier"\n'
            f'[hub]\nurl = "{hub_url}"\nappid = "{appid}"\nsecret_id = "{sid}"\nsecret_key = "{key}"\n'
            f'[api]\nport = {aport}\n[storage]\npath = "{work}/edge"\n[vision]\n{models}')
        events: list[dict] = []
        ready = threading.Event()
        _subscribe(mport, "edge-verifier/demo-door/event", events, ready)
        ready.wait(5)
        edge_log = (work / "edge.log").open("wb")
        procs.append(subprocess.Popen(cmd + ["run", "--config", str(work / "edge.toml"), "--log-level", "WARNING"],
                                      stdout=edge_log, stderr=subprocess.STDOUT))
        _say(f"daemon: camera plays {len(list(frames.iterdir()))} frames at {args.rate}/s; decisions:")
        shown = 0
        health: dict = {}
        while time.monotonic() < deadline:
            while shown < len(events):
                print(json.dumps(events[shown]) if args.events else _line(events[shown]), flush=True)
                shown += 1
            if procs[-1].poll() is not None:
                _say(f"daemon exited with {procs[-1].returncode}; see {work}/edge.log")
                break
            health = _health(aport) or health
            if health.get("camera", {}).get("status") == "ended" and health["mqtt"]["outbox_depth"] == 0 \
                    and health.get("pending") == 0 and shown >= health.get("decisions", 0):
                break
            time.sleep(0.2)
        else:
            _say("demo timeout reached")
        accepted = sorted({e["person_id"] for e in events if e["decision"] == "accept"})
        print(json.dumps({"decisions": len(events), "accepted": accepted,
                          "enrolled": sorted(enrol), "frames": health.get("camera", {}).get("frames")}))
        return 0
    except (RuntimeError, OSError) as exc:
        _say(f"demo failed: {exc} (logs in {work})")
        args.keep = True
        return 1
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if args.keep:
            _say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def _subscribe(port: int, topic: str, sink: list, ready: threading.Event) -> None:
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"demo-viewer-{os.getpid()}")

    def on_connect(c, u, f, rc, p):
        c.subscribe(topic, qos=1)
        ready.set()

    seen: set[str] = set()

    def on_message(c, u, msg):
        try:
            e = json.loads(msg.payload)
        except ValueError:
            return
        if e.get("event_id") not in seen:  # QoS 1 may deliver twice: dedupe by event_id
            seen.add(e.get("event_id"))
            sink.append(e)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
