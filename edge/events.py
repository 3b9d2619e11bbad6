"""Decision events over MQTT with a durable outbox (DESIGN.md "Events").

Topics under `<prefix>/<device>/`:
  availability  retained; `online` on connect, `offline` as the Last Will and on clean stop
  event         one JSON message per decision, QoS 1, not retained, written to the outbox first
  state         retained health and cache summary (latest only; not queued)
  cmd/verify    in: a claim {"person_id", ...};  cmd/sync: in, pull from the hub now

Delivery: `publish_event` commits the event to an SQLite outbox (WAL, synchronous=FULL: an
event the daemon has decided must survive a power cut) and wakes the sender thread, which hands
at most `window` rows to paho in id order and deletes a row only when its PUBACK arrives. paho
resends unacknowledged messages after a reconnect; rows left from an earlier run (crash, power
cut, broker outage) are sent first, in order. A message may therefore arrive twice (PUBACK lost
on the way back): every event carries a uuid `event_id` so consumers drop duplicates.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import uuid
from abc import ABC, abstractmethod
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from edge.sqlitedb import open_durable, transaction

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, dict], None]


def new_event(**fields: Any) -> dict:
    """An event dict with a fresh event_id and a UTC ISO-8601 timestamp, then `fields`."""
    return {"event_id": str(uuid.uuid4()),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            **fields}


class Outbox:
    """Events waiting for their broker acknowledgement, in order, on disk."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db = open_durable(self.path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " event_id TEXT NOT NULL UNIQUE, topic TEXT NOT NULL, payload BLOB NOT NULL,"
            " created TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')))")
        # Rows paho refuses (bad topic or payload: hand-edited file, older version) are moved
        # here instead of blocking every later event; kept for a human, never silently dropped.
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox_rejected (id INTEGER PRIMARY KEY,"
            " event_id TEXT NOT NULL, topic TEXT, payload BLOB, created TEXT, reason TEXT NOT NULL)")

    def add(self, event_id: str, topic: str, payload: bytes) -> int:
        with self._lock:
            cur = self._db.execute("INSERT INTO outbox (event_id, topic, payload) VALUES (?,?,?)",
                                   (event_id, topic, payload))
            return int(cur.lastrowid)

    def pending(self, after_id: int = 0, limit: int = 100) -> list[tuple[int, str, bytes]]:
        with self._lock:
            return list(self._db.execute(
                "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?",
                (after_id, limit)))

    def delete(self, *row_ids: int) -> None:
        """Remove acknowledged rows; several in one transaction (one fsync, not one each)."""
        if not row_ids:
            return
        with self._lock, transaction(self._db, immediate=False):
            self._db.executemany("DELETE FROM outbox WHERE id = ?", [(r,) for r in row_ids])

    def reject(self, row_id: int, reason: str) -> None:
        """Move an unpublishable row aside (one transaction) so the rows after it can go."""
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO outbox_rejected (id, event_id, topic, payload, created,"
                " reason) SELECT id, event_id, topic, payload, created, ? FROM outbox WHERE id = ?",
                (reason[:500], row_id))
            self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,))

    def depth(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def rejected(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox_rejected").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Publisher(ABC):
    """What the daemon needs from the event transport."""

    @abstractmethod
    def start(self) -> None: ...

    @abstractmethod
    def publish_event(self, event: dict) -> None: ...

    @abstractmethod
    def publish_state(self, state: dict) -> None: ...

    @abstractmethod
    def stop(self) -> None: ...

    connected: bool = False

    def outbox_depth(self) -> int:
        return 0

    def outbox_rejected(self) -> int:
        return 0

    def sender_alive(self) -> bool:
        return True


class NullPublisher(Publisher):
    """MQTT disabled: decisions are only counted and logged."""

    def start(self) -> None:
        pass

    def publish_event(self, event: dict) -> None:
        log.info("event %s", json.dumps(event))

    def publish_state(self, state: dict) -> None:
        pass

    def stop(self) -> None:
        pass


class MqttPublisher(Publisher):
    """paho-mqtt 2.x client with availability, outbox-backed events, state and commands."""

    def __init__(self, settings, device_id: str, outbox: Outbox, *,
                 on_command: CommandHandler | None = None, window: int = 100):
        self.s = settings
        self.device_id = device_id
        self.base = f"{settings.prefix}/{device_id}"
        self.outbox = outbox
        self.on_command = on_command
        self.window = window
        self.connected = False
        self._state: dict | None = None
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._inflight: dict[int, int] = {}  # paho mid -> outbox row id
        self._last_row = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.client = self._make_client()

    def topic(self, leaf: str) -> str:
        return f"{self.base}/{leaf}"

    def _make_client(self):
        import paho.mqtt.client as mqtt

        s = self.s
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                             client_id=s.client_id or f"{s.prefix}-{self.device_id}",
                             protocol=mqtt.MQTTv311, clean_session=True)
        client.will_set(self.topic("availability"), "offline", qos=1, retain=True)
        if s.username:
            client.username_pw_set(s.username, s.password or None)
        if s.tls:
            client.tls_set(ca_certs=s.ca_file or None, certfile=s.cert_file or None,
                           keyfile=s.key_file or None)
            client.tls_insecure_set(s.tls_insecure)
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, int(s.reconnect_max_s)))
        # paho's own queue holds at most our window; the outbox holds the rest on disk.
        client.max_inflight_messages_set(20)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.on_message = self._on_message
        return client

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        # connect_async + loop_start: the first connection and every reconnect happen in paho's
        # thread with backoff, so an unreachable broker never blocks or stops the daemon.
        self.client.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._sender, name="mqtt-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Flush what can be flushed within `timeout`, say `offline`, disconnect."""
        import time

        deadline = time.monotonic() + timeout
        while self.connected and self._inflight and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self.connected:
            info = self.client.publish(self.topic("availability"), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # -- publishing ------------------------------------------------------------------------
    def publish_event(self, event: dict) -> None:
        self.outbox.add(event["event_id"], self.topic("event"),
                        json.dumps(event, separators=(",", ":")).encode())
        self._wake.set()

    def publish_state(self, state: dict) -> None:
        self._state = state
        if self.connected:
            self.client.publish(self.topic("state"), json.dumps(state), qos=1, retain=True)

    def outbox_depth(self) -> int:
        return self.outbox.depth()

    def outbox_rejected(self) -> int:
        return self.outbox.rejected()

    def sender_alive(self) -> bool:
        """False once the outbox thread has ended while the publisher runs (reported in state)."""
        return self._thread is not None and (self._thread.is_alive() or self._stop.is_set())

    def _sender(self) -> None:
        # An exception here used to end the thread silently: events then piled up in the
        # outbox forever while the daemon looked healthy. Log it, wait, try again.
        while not self._stop.is_set():
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._send_some()
            except Exception:
                log.exception("outbox sender failed; retrying")
                self._stop.wait(1.0)

    def _send_some(self) -> None:
        self._drain_acks()
        if not self.connected or len(self._inflight) >= self.window:
            return
        for row_id, topic, payload in self.outbox.pending(self._last_row,
                                                          self.window - len(self._inflight)):
            try:
                info = self.client.publish(topic, payload, qos=1, retain=False)
            except (TypeError, ValueError) as exc:  # paho refuses it: it never will accept it
                log.error("outbox row %d cannot be published (%s): moved to outbox_rejected",
                          row_id, exc)
                self.outbox.reject(row_id, str(exc))
                self._last_row = row_id
                continue
            self._inflight[info.mid] = row_id
            self._last_row = row_id
        self._drain_acks()

    def _drain_acks(self) -> None:
        done = []
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            row_id = self._inflight.pop(mid, None)
            if row_id is not None:
                done.append(row_id)
        self.outbox.delete(*done)

    # -- paho callbacks (network thread: never block, never take the outbox lock here) ------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.warning("mqtt connect refused: %s", reason_code)
            return
        self.connected = True
        log.info("mqtt connected to %s:%s", self.s.host, self.s.port)
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        client.subscribe(self.topic("cmd/+"), qos=1)
        if self.s.ha_discovery:
            client.subscribe(f"{self.s.ha_prefix}/status", qos=1)
            self._publish_discovery()
        if self._state is not None:
            client.publish(self.topic("state"), json.dumps(self._state), qos=1, retain=True)
        self._wake.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected:
            log.warning("mqtt disconnected (%s); reconnecting with backoff", reason_code)
        self.connected = False

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        self._acks.put(mid)
        self._wake.set()

    def _on_message(self, client, userdata, msg) -> None:
        if msg.topic == f"{self.s.ha_prefix}/status":
            if msg.payload == b"online":
                self._publish_discovery()  # Home Assistant restarted: it forgot our entities
            return
        leaf = msg.topic[len(self.base) + 1:]
        if not leaf.startswith("cmd/") or self.on_command is None:
            return
        try:
            payload = json.loads(msg.payload or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            log.warning("ignoring %s: payload is not a JSON object (%s)", msg.topic, exc)
            return
        try:
            self.on_command(leaf[4:], payload)
        except Exception:  # a bad command must not kill paho's network thread
            log.exception("command %s failed", msg.topic)

    def _publish_discovery(self) -> None:
        dev = {"identifiers": [f"edge-verifier-{self.device_id}"], "name": f"Door {self.device_id}",
               "manufacturer": "edge-verifier", "model": "edge daemon"}
        common = {"availability_topic": self.topic("availability"), "device": dev,
                  "state_topic": self.topic("event"), "json_attributes_topic": self.topic("event")}
        sensors = {
            "decision": ("Last decision", "{{ value_json.decision }}"),
            "person": ("Last person", "{{ value_json.person_name or value_json.person_id or 'unknown' }}"),
        }
        for key, (name, template) in sensors.items():
            uid = f"edge_verifier_{self.device_id}_{key}".replace("-", "_").replace(".", "_")
            cfg = {**common, "name": name, "unique_id": uid, "value_template": template}
            self.client.publish(f"{self.s.ha_prefix}/sensor/{uid}/config", json.dumps(cfg),
                                qos=1, retain=True)
