"""The development stack as local processes: a mosquitto broker, a hub and an edge daemon.

One home for starting them, used by `edge-verifier demo`, the daemon and first-accept
benchmarks and the tests:

    broker = Broker(work).start()                       # mosquitto on a free loopback port
    hub = HubProc(work, models_dir=None).start()        # `edge-verifier hub`, fresh credential
    enrol_five(hub.client(), faces_dir)                 # the five_celebrity people, on the hub
    cfg = write_toml(work / "edge.toml", edge_config(device="door", source="files:/x/*",
                     storage=work / "edge", api_port=free_port(), broker=broker, hub=hub),
                     private=True)
    daemon = DaemonProc(cfg, api_port, work / "edge.log").start()
    feed = EventFeed(broker.port, "edge-verifier/door/event")   # decisions as they arrive

Configs are written by a TOML writer (tomli-w), so a path with a quote or a backslash stays a
path. Every wait has a deadline; `stop()` / `terminate()` end what `start()` began.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from edge.dev.localenv import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
LOOPBACK = "127.0.0.1"


def cli() -> list[str]:
    """The command that runs `edge-verifier` from this environment."""
    exe = Path(sys.executable).with_name("edge-verifier")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "edge"]


def write_toml(path: Path, data: dict, *, private: bool = False) -> Path:
    """`data` as TOML; `private` (it holds a secret key): mode 0600 before anything is written,
    as the hub and the daemon require of such a file."""
    if private:
        path.touch(mode=0o600)
        path.chmod(0o600)
    path.write_text(tomli_w.dumps(data))
    return path


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 60) -> None:
    """Until `port` accepts on loopback; RuntimeError when `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            socket.create_connection((LOOPBACK, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {timeout:.0f}s")


def health(port: int) -> dict | None:
    """GET /health of a local API on loopback, or None when it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return None


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> bool:
    """Until GET /health on loopback `port` answers 200 (True); False when `proc` exits first or
    time runs out (the caller says why, with its log)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if health(port) is not None:
            return True
        time.sleep(0.1)
    return False


def _end(proc: subprocess.Popen | None, timeout: float) -> int | None:
    """SIGTERM, then SIGKILL after `timeout`; the exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Broker:
    """mosquitto on a free loopback port, stoppable and restartable on that port. With
    `persistence`, a subscriber's persistent session keeps its queued QoS 1 messages across a
    restart, like a production broker. `conf`: more lines of its configuration."""

    def __init__(self, workdir: Path, *, persistence: bool = False, conf: str = ""):
        self.workdir = Path(workdir)
        self.host = LOOPBACK
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.conf = self.workdir / "mosquitto.conf"
        self.log = self.workdir / "mosquitto.log"
        self.conf.write_text(
            f"listener {self.port} {LOOPBACK}\nallow_anonymous true\n"
            + (f"persistence true\npersistence_location {self.workdir}/\n" if persistence
               else "persistence false\n")
            + f"log_dest file {self.log}\n" + conf
            # As root mosquitto drops to the `mosquitto` user, which cannot write our temp dir.
            + ("user root\n" if os.geteuid() == 0 else ""))

    def start(self, timeout: float = 10) -> Broker:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is needed: apt-get install mosquitto")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(self.port, self.proc, "mosquitto", timeout)
        except RuntimeError as exc:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{exc}: {log[-2000:]}") from None
        return self

    def stop(self) -> None:
        _end(self.proc, 5)  # SIGTERM: mosquitto saves its persistence file
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


class HubProc:
    """`edge-verifier hub` in a subprocess on a free loopback port, with a SQLite store in
    `workdir` and one freshly generated credential."""

    def __init__(self, workdir: Path, *, models_dir: Path | None = None, log_level: str = "warning",
                 sections: dict | None = None):
        self.workdir = Path(workdir)
        self.sections = sections or {}  # more config sections, e.g. {"limits": {"rate_per_s": 0}}
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.appid = "100001"
        self.secret_id = "AKIDdev" + secrets.token_hex(8)
        self.secret_key = secrets.token_hex(16)
        self.models_dir = models_dir
        self.log_level = log_level
        self.proc: subprocess.Popen | None = None

    def config(self) -> dict:
        from edge.hub.face_crops import add_key

        secrets_file = self.workdir / "hub-secrets.toml"
        add_key(secrets_file)  # once: a second call keeps the key
        return {"secrets_file": str(secrets_file), "server": {"host": LOOPBACK, "port": self.port},
                "storage": {"path": str(self.workdir / "hub.sqlite3")},
                "credentials": [{"appid": self.appid, "secret_id": self.secret_id,
                                 "secret_key": self.secret_key}],
                "vision": {"models_dir": str(self.models_dir)} if self.models_dir else {},
                **self.sections}

    def edge_key(self, storage: Path, groups: tuple[str, ...] = ()) -> HubKey:
        """A key of this hub bound to the edge whose [storage] path is `storage` (its id learnt
        from its own key there, made as its daemon would make it) and to the `groups` it serves,
        as a door is installed (docs/security.md): added to the secrets file, so call it before
        `start` (or restart)."""
        from edge.daemon.api_key import own_credential
        from edge.hub.edge_keys import add_edge_key

        edge_id = own_credential(storage, self.appid).secret_id
        cred = add_edge_key(self.workdir / "hub-secrets.toml", self.appid, edge_id, groups)
        return HubKey(self.url, cred.appid, cred.secret_id, cred.secret_key)

    def start(self, timeout: float = 60) -> HubProc:
        cfg = write_toml(self.workdir / "hub.toml", self.config(), private=True)
        self._log = (self.workdir / "hub.log").open("wb")
        self.proc = subprocess.Popen(cli() + ["hub", "--config", str(cfg), "--log-level", self.log_level],
                                     stdout=self._log, stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, "hub", timeout)
        return self

    def client(self, **kw):
        from edge.api.client import CloudClient

        return CloudClient(self.url, self.appid, self.secret_id, self.secret_key, **kw)

    def stop(self) -> None:
        _end(self.proc, 15)
        if self.proc is not None:
            self._log.close()
        self.proc = None


@dataclass(frozen=True)
class HubKey:
    """What an edge's [hub] section needs (edge_config's `hub`): the url and one key."""

    url: str
    appid: str
    secret_id: str
    secret_key: str


def enrol_five(client, faces_dir: Path, group: str = "staff", photos: int = 2) -> dict[str, str]:
    """Enrol the five_celebrity people (train_* photos) on a hub; returns person_id -> name."""
    people = {}
    for person_dir in sorted((faces_dir / "five_celebrity").iterdir()):
        trains = sorted(person_dir.glob("train_*.jpg"), key=lambda p: int(p.stem.split("_")[1]))
        pid = person_dir.name.lower()
        enrolled = 0
        for photo in trains:
            try:
                if not enrolled:
                    client.newperson(pid, [group], photo.read_bytes(), person_name=person_dir.name)
                else:
                    client.addface(pid, [photo.read_bytes()])
                enrolled += 1
            except Exception:  # a train photo without a usable face: take the next one
                continue
            if enrolled >= photos:
                break
        assert enrolled, f"no usable train photo for {pid}"
        people[pid] = person_dir.name
    return people


def edge_config(*, device: str, source: str, storage: Path, api_port: int, broker=None, hub=None,
                prefix: str = "edge-verifier", models_dir: Path | None = None, **sections: dict) -> dict:
    """A daemon config as a dict for `write_toml`: the camera `source`, MQTT to `broker` (off
    without one), the hub's url and credential (`hub`: anything with url, appid, secret_id,
    secret_key), the local API on loopback; `sections` adds to or overrides any section. The local
    API and the MQTT commands then take the daemon's own key, made on its first start in
    `<storage>/api-key.toml`, unless `sections` gives `[api] credentials` (never the hub's key)."""
    cfg: dict = {
        "device": {"id": device},
        "camera": {"source": source},
        "mqtt": ({"host": broker.host, "port": broker.port, "prefix": prefix} if broker is not None
                 else {"enabled": False}),
        "api": {"host": LOOPBACK, "port": api_port},
        "storage": {"path": str(storage)},
        "vision": {"models_dir": str(models_dir)} if models_dir else {},
    }
    if hub is not None:
        cfg["hub"] = {"url": hub.url, "appid": hub.appid, "secret_id": hub.secret_id,
                      "secret_key": hub.secret_key}
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return cfg


class DaemonProc:
    """`edge-verifier run --config FILE` in a subprocess, with its local API for /health.
    `wrap` prefixes the command (e.g. `taskset -c 0`)."""

    def __init__(self, config: Path, api_port: int, log: Path, *, args: tuple[str, ...] = (),
                 wrap: tuple[str, ...] = ()):
        self.config, self.api_port, self.log = Path(config), api_port, Path(log)
        self.args, self.wrap = list(args), list(wrap)
        self.proc: subprocess.Popen | None = None

    def start(self, env: dict | None = None) -> DaemonProc:
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen(self.wrap + cli() + ["run", "--config", str(self.config), *self.args],
                                     stdout=self._fh, stderr=subprocess.STDOUT, env=env)
        return self

    def health(self) -> dict | None:
        return health(self.api_port)

    def wait_port(self, timeout: float = 60) -> None:
        wait_port(self.api_port, self.proc, "daemon", timeout)

    def wait_health(self, predicate, timeout: float = 60.0) -> dict:
        """The first /health for which `predicate` is true; RuntimeError if the daemon exits or
        time runs out (with the end of its log)."""
        deadline = time.monotonic() + timeout
        h = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited: {self.log.read_text()[-3000:]}")
            h = self.health()
            if h is not None and predicate(h):
                return h
            time.sleep(0.1)
        raise RuntimeError(f"daemon health never matched; last {h}; log: {self.log.read_text()[-3000:]}")

    def terminate(self, timeout: float = 15) -> int | None:
        code = _end(self.proc, timeout)
        self._fh.close()
        return code

    def stop(self) -> None:
        self.terminate()

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._fh.close()


class EventFeed:
    """Decision events of one topic as they arrive: (monotonic time, event), deduplicated on
    event_id (QoS 1 may deliver a message twice)."""

    def __init__(self, port: int, topic: str, timeout: float = 5):
        import paho.mqtt.client as mqtt

        self.events: list[tuple[float, dict]] = []
        self.lock = threading.Lock()
        self._seen: set[str] = set()
        ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=f"devstack-feed-{os.getpid()}-{time.monotonic_ns()}")
        self.client.on_connect = lambda c, u, f, rc, p: (c.subscribe(topic, qos=1), ready.set())
        self.client.on_message = self._on_message
        self.client.connect(LOOPBACK, port)
        self.client.loop_start()
        ready.wait(timeout)

    def _on_message(self, client, userdata, msg) -> None:
        try:
            event = json.loads(msg.payload)
        except ValueError:
            return
        with self.lock:
            if isinstance(event, dict) and event.get("event_id") not in self._seen:
                self._seen.add(event.get("event_id"))
                self.events.append((time.monotonic(), event))

    def snapshot(self) -> list[dict]:
        with self.lock:
            return [e for _, e in self.events]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
