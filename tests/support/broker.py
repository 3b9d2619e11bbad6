"""The MQTT side of the tests: a real mosquitto, a subscriber that checks every message against
its published schema, and the edge daemon as a real process (all started by edge.dev.devstack).

The broker keeps persistence on (in the test's own directory) so that a subscriber with a
persistent session keeps its queued QoS 1 messages across a broker restart, like a production
broker would.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from edge.core.signature import Credential
from edge.dev.devstack import MOSQUITTO, Broker, DaemonProc, edge_config, enrol_five, write_toml
from tests.conftest import MODELS, wait_until

__all__ = ["EDGE_API", "EDGE_VERIFIER", "MOSQUITTO", "Broker", "DaemonProc", "FramesRun", "Subscriber",
           "broker_with_clients", "daemon_over_frames", "edge_auth", "edge_client", "edge_command", "enrol_five",
           "mqtt_client", "sample_event", "schema_errors", "write_edge_config"]


# The key of the edge's own channels (its local API and MQTT commands) in the tests:
# `write_edge_config` puts it in `[api] credentials`. Never the hub's key (the daemon refuses
# that): sign local API requests with `edge_auth` / `edge_client`, commands with `edge_command`.
# Its appid is the test hub's (tests.support.hub.APPID), so bodies keep that appid.
EDGE_API = Credential("1000001", "AKIDedgeapitest00000001", secrets.token_hex(16))


def edge_auth(**kw) -> str:
    """An Authorization header for the edge's local API (`sign`'s keywords: expiry=0 and
    fileid="/edge/claim" for a single-use one)."""
    from edge.core.signature import sign

    return sign(EDGE_API.appid, EDGE_API.secret_id, EDGE_API.secret_key, **kw)


def edge_command(name: str, **kw) -> dict:
    """A signed MQTT command payload (edge.daemon.commands.signed_command) with EDGE_API."""
    from edge.daemon.commands import signed_command

    return signed_command(name, EDGE_API.appid, EDGE_API.secret_id, EDGE_API.secret_key, **kw)


def edge_client(api_port: int, **kw):
    """A CloudClient for the daemon's local API on `api_port`, signing with EDGE_API."""
    from edge.api.client import CloudClient

    return CloudClient(f"http://127.0.0.1:{api_port}", EDGE_API.appid, EDGE_API.secret_id, EDGE_API.secret_key, **kw)


def schema_errors(topic: str, payload: bytes) -> list[str]:
    """What is wrong with a message on an `event` or `state` topic (the device's or its door's),
    by the schema the package publishes (edge/schemas); other topics are not checked."""
    from jsonschema import Draft202012Validator

    from edge.schemas import schema

    parts = topic.split("/")
    leaf = parts[-1]
    if leaf not in ("event", "state"):
        return []
    if is_door_topic(topic):
        leaf = f"door-{leaf}"
    try:
        message = json.loads(payload)
    except ValueError as exc:
        return [f"{topic}: not JSON ({exc})"]
    validator = Draft202012Validator(schema(leaf), format_checker=Draft202012Validator.FORMAT_CHECKER)
    return [f"{topic}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(message)]


def is_door_topic(topic: str) -> bool:
    """<prefix>/<device>/door/<door>/<leaf>: the door's own topics (edge.daemon.door_link)."""
    parts = topic.split("/")
    return len(parts) >= 5 and parts[-3] == "door"


def sample_event(**fields) -> dict:
    """A decision event as the daemon builds it (an identify that found nobody), for the
    transport tests."""
    from edge.core.domain import Decision, Mode, Source
    from edge.daemon.decide import Outcome
    from edge.daemon.decision_event import decision_event

    event = decision_event(Outcome(Mode.IDENTIFY, Decision.UNKNOWN, Source.LOCAL), device="door-t",
                           camera="test", fingerprints={"pack": "0" * 16}, cache_version="empty",
                           admits=(False, "decision_unknown"))
    return {**event, **fields}


class Subscriber:
    """Collects JSON messages of a topic filter; a persistent session survives broker restarts.
    Every event and state message is checked against its published JSON Schema: a message that
    does not conform fails the test (at `json()` or when the subscriber is closed)."""

    def __init__(self, broker: Broker, topic: str, client_id: str | None = None):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.qos: list[tuple[str, int]] = []  # (topic, the QoS it was delivered with) of each message
        self.schema_errors: list[str] = []
        self._cond = threading.Condition()
        self.topic = topic
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"test-sub-{time.monotonic_ns()}",
                                  clean_session=client_id is None)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda c, u, mid, codes, p: subscribed.set()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1)
        self.client.connect(broker.host, broker.port, keepalive=10)
        self.client.loop_start()
        # Returned only once the broker has the subscription: a message published right after
        # (not retained) would otherwise be lost on a loaded machine, and the test fail by chance.
        if not subscribed.wait(15):
            self.close(check=False)
            raise TimeoutError(f"the broker did not acknowledge the subscription to {topic!r} within 15 s")

    def _on_message(self, client, userdata, msg) -> None:
        errors = schema_errors(msg.topic, bytes(msg.payload))
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.qos.append((msg.topic, msg.qos))
            self.schema_errors += errors
            self._cond.notify_all()

    def assert_conform(self) -> None:
        with self._cond:
            assert not self.schema_errors, "messages off their schema:\n" + "\n".join(self.schema_errors[:20])

    def json(self, suffix: str = "") -> list[dict]:
        """The JSON messages whose topic ends with `suffix`; the door's topics
        (<prefix>/<device>/door/<door>/event, /state) only when `suffix` names them (`/door/`),
        so `/event` and `/state` stay the device's decisions and health."""
        self.assert_conform()
        with self._cond:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix) and p.startswith(b"{")
                    and ("door/" in suffix or not is_door_topic(t))]

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        """wait_until with the lock held for `predicate`, woken by each message as it arrives."""
        with self._cond:
            return wait_until(predicate, timeout, every=0.2, pause=self._cond.wait)

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
    broker = Broker(tmp_path_factory.mktemp("mosquitto"), persistence=True)
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


@pytest.fixture
def mqtt_sender(mosquitto):
    """A paho client connected to the test's mosquitto (mqtt_client), stopped after the test."""
    with mqtt_client(mosquitto) as client:
        yield client


# -- the edge daemon as a real process (daemon tests) ---------------------------------------

ROOT = Path(__file__).resolve().parents[2]
EDGE_VERIFIER = ROOT / ".venv" / "bin" / "edge-verifier"


def write_edge_config(path: Path, *, device: str, camera: str, broker: Broker | None, hub=None,
                      storage: Path, api_port: int, rate: float = 4, loop: bool = False,
                      sections: dict[str, dict] | None = None) -> Path:
    """A daemon TOML config for tests (rate and backoff short, so runs are brief); `sections`
    adds to or overrides any section. Written 0600: it holds the hub's secret key. The local API
    and the commands take EDGE_API (`[api] credentials`), not the hub's key.

    Liveness is off unless a test asks for it in `sections`: most tests play each photo as one
    frame, and a track is judged live over several (tests/daemon/test_liveness.py covers it)."""
    cfg = edge_config(
        device=device, source=camera, storage=storage, api_port=api_port, broker=broker, hub=hub,
        prefix="test", models_dir=MODELS,
        camera={"rate": rate, "loop": loop, "retry_initial_s": 0.2, "retry_max_s": 0.5},
        mqtt={"prefix": "test", "keepalive": 5, "reconnect_max_s": 1},
        vision={"threads": 1}, liveness={"mode": "off"},
        api={"credentials": [{"appid": EDGE_API.appid, "secret_id": EDGE_API.secret_id,
                              "secret_key": EDGE_API.secret_key}]})
    if hub is not None:
        cfg["hub"].update(timeout=5, retries=0, breaker_failures=2, breaker_reset_s=60, sync_interval_s=3600)
    for name, values in (sections or {}).items():
        cfg[name] = {**cfg.get(name, {}), **values}
    return write_toml(path, cfg, private=True)


@contextmanager
def broker_with_clients(tmp: Path, topic: str) -> Iterator[tuple[Broker, Subscriber, object]]:
    """A fresh mosquitto in `tmp`, a Subscriber on `topic` and a connected paho publisher (what a
    badge reader would be); all stopped when the block ends."""
    broker = Broker(tmp)
    broker.start()
    sub = Subscriber(broker, topic)
    try:
        with mqtt_client(broker) as pub:
            yield broker, sub, pub
    finally:
        sub.close()
        broker.stop()


@contextmanager
def mqtt_client(broker: Broker) -> Iterator[object]:
    """A paho client connected to `broker` with its network loop running (a badge reader, a
    home-automation script sending commands); stopped and disconnected when the block ends."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        yield client
    finally:
        client.disconnect()
        client.loop_stop()


@dataclass
class FramesRun:
    """What a daemon run over a folder of frames left: the decisions it published, its last
    /health, and the parts still running inside `daemon_over_frames`'s block."""

    events: list[dict]
    health: dict
    api_port: int
    daemon: DaemonProc
    hub: object
    client: object  # the hub's API client that enrolled
    sub: Subscriber
    broker: Broker


@contextmanager
def daemon_over_frames(tmp: Path, frames: Path, *, device: str, enrol: Callable[[object], object],
                       sections: dict[str, dict], deadline_s: float = 120) -> Iterator[FramesRun]:
    """A real mosquitto and a real hub in `tmp`, `enrol(client)` done on the hub, then the daemon
    as its own process reading `frames` through a `files:` camera until the camera has ended,
    nothing is pending and the outbox is empty; every decision published is in the run's
    `events`. The daemon must exit cleanly (code 0) when the block ends."""
    from tests.conftest import free_port
    from tests.support.hub import start_hub  # it imports this module

    (tmp / "broker").mkdir(parents=True)
    broker = Broker(tmp / "broker")
    broker.start()
    try:
        with start_hub(tmp / "hub") as hub:
            client = hub.client(timeout=30.0, retries=0)
            enrol(client)
            sub = Subscriber(broker, f"test/{device}/#")
            port = free_port()
            cfg = write_edge_config(tmp / "edge.toml", device=device, camera=f"files:{frames}/*", broker=broker,
                                    hub=hub, storage=tmp / "data", api_port=port, sections=sections)
            daemon = DaemonProc(cfg, port, tmp / "daemon.log").start()
            try:
                health = daemon.wait_health(
                    lambda h: h["camera"]["status"] == "ended" and h["pending"] == 0
                    and h["mqtt"]["outbox_depth"] == 0, deadline_s)
                assert sub.wait_for(lambda: len(sub.json("/event")) >= health["decisions"], 15)
                yield FramesRun(sub.json("/event"), health, port, daemon, hub, client, sub, broker)
            finally:
                assert daemon.terminate() == 0
                sub.close()
                client.close()
    finally:
        broker.stop()
