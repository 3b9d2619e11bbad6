"""A real mosquitto broker on a free loopback port, stoppable and restartable on that port.

Persistence is on (in the test's own directory) so that a subscriber with a persistent session
keeps its queued QoS 1 messages across a broker restart, like a production broker would.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import free_port

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


class Broker:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence true\npersistence_location {workdir}/\n"
            f"log_dest file {workdir}/mosquitto.log\n"
            # As root mosquitto drops to the `mosquitto` user, which cannot write our temp dir.
            + ("user root\n" if os.geteuid() == 0 else ""))

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    log = (self.workdir / "mosquitto.log").read_text()
                    raise RuntimeError(f"mosquitto exited: {log}") from None
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def schema_errors(topic: str, payload: bytes) -> list[str]:
    """What is wrong with a message on an `event` or `state` topic, by the schema the package
    publishes (edge/schemas); other topics are not checked."""
    from jsonschema import Draft202012Validator

    from edge.schemas import schema

    leaf = topic.rsplit("/", 1)[-1]
    if leaf not in ("event", "state"):
        return []
    try:
        message = json.loads(payload)
    except ValueError as exc:
        return [f"{topic}: not JSON ({exc})"]
    validator = Draft202012Validator(schema(leaf), format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{topic}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(message)]


def sample_event(**fields) -> dict:
    """A decision event as the daemon builds it (an identify that found nobody), for the
    transport tests."""
    from edge.daemon.decide import Outcome
    from edge.decision_event import decision_event
    from edge.domain import Decision, Mode, Source

    event = decision_event(Outcome(Mode.IDENTIFY, Decision.UNKNOWN, Source.LOCAL), device="door-t",
                           camera="test", fingerprints={"pack": "0" * 16}, cache_version="empty")
    return {**event, **fields}


class Subscriber:
    """Collects JSON messages of a topic filter; a persistent session survives broker restarts.
    Every event and state message is checked against its published JSON Schema: a message that
    does not conform fails the test (at `json()` or when the subscriber is closed)."""

    def __init__(self, broker: Broker, topic: str, client_id: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.schema_errors: list[str] = []
        self._cond = threading.Condition()
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-sub-{time.monotonic_ns()}",
                                  clean_session=client_id is None)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        errors = schema_errors(msg.topic, bytes(msg.payload))
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.schema_errors += errors
            self._cond.notify_all()

    def assert_conform(self) -> None:
        with self._cond:
            assert not self.schema_errors, "messages off their schema:\n" + "\n".join(self.schema_errors[:20])

    def json(self, suffix: str = "") -> list[dict]:
        self.assert_conform()
        with self._cond:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix) and p.startswith(b"{")]

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.2))
            return True

    def close(self, check: bool = True) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        if check:
            self.assert_conform()


@pytest.fixture
def mosquitto(tmp_path_factory):
    """A running mosquitto (function scope: faults tests stop and restart it)."""
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed: apt-get install mosquitto (make test does)")
    broker = Broker(tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture
def subscribe(mosquitto):
    """subscribe(topic, client_id=None) -> Subscriber, closed after the test."""
    subs: list[Subscriber] = []

    def make(topic: str, client_id: str | None = None) -> Subscriber:
        sub = Subscriber(mosquitto, topic, client_id)
        subs.append(sub)
        return sub

    yield make
    for s in subs:
        s.close(check=False)
    for s in subs:
        s.assert_conform()


# -- the edge daemon as a real process (daemon tests) ---------------------------------------

ROOT = Path(__file__).resolve().parents[1]
EDGE_VERIFIER = ROOT / ".venv" / "bin" / "edge-verifier"


def write_edge_config(path: Path, *, device: str, camera: str, broker: Broker | None, hub=None,
                      storage: Path, api_port: int, extra: str = "", rate: float = 4,
                      loop: bool = False, hub_extra: str = "", mqtt_extra: str = "", api_extra: str = "") -> Path:
    """A daemon TOML config for tests (rate and backoff short, so runs are brief)."""
    from tests.conftest import MODELS

    lines = [
        "[device]", f'id = "{device}"',
        "[camera]", f'source = "{camera}"', f"rate = {rate}", f"loop = {'true' if loop else 'false'}",
        "retry_initial_s = 0.2", "retry_max_s = 0.5",
        "[mqtt]", f"enabled = {'true' if broker else 'false'}",
        f'host = "{broker.host if broker else "127.0.0.1"}"', f"port = {broker.port if broker else 1}",
        'prefix = "test"', "keepalive = 5", "reconnect_max_s = 1", mqtt_extra,
        "[api]", 'host = "127.0.0.1"', f"port = {api_port}", api_extra,
        "[storage]", f'path = "{storage}"',
        "[vision]", f'models_dir = "{MODELS}"', "threads = 1",
    ]
    if hub is not None:
        lines += ["[hub]", f'url = "{hub.url}"', f'appid = "{hub.appid}"',
                  f'secret_id = "{hub.secret_id}"', f'secret_key = "{hub.secret_key}"',
                  "timeout = 5", "retries = 0", "breaker_failures = 2", "breaker_reset_s = 60",
                  "sync_interval_s = 3600", hub_extra]
    path.touch(mode=0o600)
    path.chmod(0o600)  # it holds the hub's secret key
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


class DaemonProc:
    """`edge-verifier run --config FILE` in a subprocess, with its local API for /health."""

    def __init__(self, config: Path, api_port: int, log: Path):
        self.config, self.api_port, self.log = config, api_port, log
        self.proc: subprocess.Popen | None = None

    def start(self) -> "DaemonProc":
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen([str(EDGE_VERIFIER), "run", "--config", str(self.config)],
                                     stdout=self._fh, stderr=subprocess.STDOUT)
        return self

    def health(self) -> dict | None:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}/health", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def wait_health(self, predicate, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        h = None
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"daemon exited: {self.log.read_text()[-3000:]}"
            h = self.health()
            if h is not None and predicate(h):
                return h
            time.sleep(0.1)
        raise AssertionError(f"daemon health never matched; last {h}; log: {self.log.read_text()[-3000:]}")

    def terminate(self, timeout: float = 15) -> int:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._fh.close()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._fh.close()


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
