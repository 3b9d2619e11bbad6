"""Decision events over MQTT with a durable outbox (README "Events (MQTT)").

Topics under `<prefix>/<device>/`:
  availability  retained; `online` on connect, `offline` as the Last Will and on clean stop
  event         one JSON message per decision, QoS 1, not retained, written to the outbox first
  state         retained health and cache summary (latest only; not queued)
  cmd/verify    in: a claim {"person_id", ...};  cmd/sync: in, pull from the hub now

Delivery: `publish_event` commits the event to an SQLite outbox (WAL, synchronous=FULL: an
event the daemon has decided must survive a power cut) and wakes the sender thread, which hands
at most `window` rows to paho and deletes a row only when its PUBACK arrives. paho resends
unacknowledged messages after a reconnect. Two lanes: events decided by this run go first (a
live decision must not wait behind an outage's backlog); the backlog (rows left from an earlier
run or beyond the live lane's memory) follows in id order. The outbox holds at most `max_rows`
events; beyond, the oldest are dropped and counted. When the outbox cannot be written (full
disk) events are held in memory (at most HELD_MAX, the oldest dropped beyond) and sent directly,
and saved once the disk takes writes again. An accept that leaves later than `stale_accept_s`
after its decision goes out as `unknown`, reason `stale_accept` (mark_stale). A message may
arrive twice (PUBACK lost on the way back, a held event saved while in flight): every event
carries a uuid `event_id` so consumers drop duplicates.
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections import deque
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from edge.core.sqlitedb import open_durable, transaction

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, dict], None]
MAX_COMMAND_BYTES = 4096  # the API's cap on a claim body
LIVE_MAX = 1000  # events of this run remembered for the live lane (older ones wait their turn)
HELD_MAX = 1000  # events held in memory while the outbox cannot be written (full disk)


def new_event(**fields: Any) -> dict:
    """An event dict with a fresh event_id and a UTC ISO-8601 timestamp, then `fields`."""
    return {"event_id": str(uuid.uuid4()),
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            **fields}


class Outbox:
    """Events waiting for their broker acknowledgement, in order, on disk.

    At most `max_rows`: adding to a full outbox drops the oldest rows (`dropped` counts them),
    so after a long outage the newest decisions, the ones a door still acts on, go out.
    """

    def __init__(self, path: str | Path, max_rows: int = 100_000):
        self.path = Path(path)
        self.max_rows = max_rows
        self.dropped = 0  # since this process started
        self.dropped_through = 0  # the newest row id dropped
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
        self._depth = int(self._db.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def add(self, event_id: str, topic: str, payload: bytes) -> int:
        with self._lock:
            over = self._depth + 1 - self.max_rows
            if over <= 0:
                cur = self._db.execute("INSERT INTO outbox (event_id, topic, payload) VALUES (?,?,?)",
                                       (event_id, topic, payload))
            else:
                with transaction(self._db):
                    cut = self._db.execute("SELECT id FROM outbox ORDER BY id LIMIT 1 OFFSET ?",
                                           (over - 1,)).fetchone()[0]
                    gone = self._db.execute("DELETE FROM outbox WHERE id <= ?", (cut,)).rowcount
                    cur = self._db.execute("INSERT INTO outbox (event_id, topic, payload)"
                                           " VALUES (?,?,?)", (event_id, topic, payload))
                if not self.dropped:
                    log.warning("outbox full (%d events): dropping the oldest to keep the newest",
                                self.max_rows)
                self.dropped += gone
                self.dropped_through = cut
                self._depth -= gone
            self._depth += 1
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
            gone = self._db.executemany("DELETE FROM outbox WHERE id = ?", [(r,) for r in row_ids]).rowcount
        self._depth -= gone

    def reject(self, row_id: int, reason: str) -> None:
        """Move an unpublishable row aside (one transaction) so the rows after it can go."""
        with self._lock, transaction(self._db):
            self._db.execute(
                "INSERT OR REPLACE INTO outbox_rejected (id, event_id, topic, payload, created,"
                " reason) SELECT id, event_id, topic, payload, created, ? FROM outbox WHERE id = ?",
                (reason[:500], row_id))
            gone = self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
        self._depth -= gone

    def probe(self) -> None:
        """One small committed write: raises sqlite3.Error while the disk takes none."""
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS probe (id INTEGER PRIMARY KEY, at REAL)")
            self._db.execute("INSERT OR REPLACE INTO probe VALUES (1, julianday('now'))")

    def depth(self) -> int:
        return self._depth  # kept in step by add/delete/reject: count(*) is a scan

    def rejected(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM outbox_rejected").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def mark_stale(payload: bytes, max_age_s: float, now: float | None = None) -> bytes:
    """An accept older than `max_age_s` (by its decision timestamp) leaves as decision
    `unknown`, reason `stale_accept`, with its age: a controller must not open the door for
    someone who may have left long ago. Anything else is returned as is."""
    if max_age_s <= 0 or b'"decision":"accept"' not in payload:
        return payload
    try:
        event = json.loads(payload)
        age = (time.time() if now is None else now) - datetime.fromisoformat(event["timestamp"]).timestamp()
    except (ValueError, KeyError, TypeError):  # not one of our events: not ours to judge
        return payload
    if age <= max_age_s:
        return payload
    event.update(decision="unknown", reason="stale_accept", stale_s=round(age, 1))
    return json.dumps(event, separators=(",", ":")).encode()


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

    def outbox_health(self) -> dict:
        return {"writable": True, "held_in_memory": 0, "dropped": 0}

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
                 on_command: CommandHandler | None = None, window: int = 100,
                 stale_accept_s: float = 0.0):
        self.s = settings
        self.device_id = device_id
        self.base = f"{settings.prefix}/{device_id}"
        self.outbox = outbox
        self.on_command = on_command
        self.window = window
        self.connected = False
        self._state: dict | None = None
        self._dropped_commands = 0
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._inflight: dict[int, int | str] = {}  # paho mid -> outbox row id (or held event_id)
        self._last_row = 0  # the backlog lane: every row up to this one has been handed to paho
        # The live lane: events of this run go out before the backlog, which follows in order.
        self._live: deque[tuple[int, str, bytes]] = deque(maxlen=LIVE_MAX)
        self._sent_ahead: set[int] = set()  # rows the live lane sent past the backlog cursor
        # A full disk: events wait here (bounded) and go to the broker directly meanwhile.
        self._held: deque[tuple[str, str, bytes]] = deque()
        self._held_lock = threading.Lock()
        self._held_sending: set[str] = set()
        self.held_dropped = 0
        self.writable = True
        self._unsaved_acks: list[int] = []
        self.stale_accept_s = stale_accept_s
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
        """Commit the event to the outbox; when that fails (full disk) hold it in memory: the
        caller's decision is made, it must not be retried with a new timestamp."""
        topic, payload = self.topic("event"), json.dumps(event, separators=(",", ":")).encode()
        with self._held_lock:
            held = bool(self._held)
        if not held:  # events already held go first: order is kept
            try:
                self._live.append((self.outbox.add(event["event_id"], topic, payload), topic, payload))
                self._wake.set()
                return
            except sqlite3.Error as exc:
                self._cannot_write(exc)
        with self._held_lock:
            if len(self._held) >= HELD_MAX:
                self._held.popleft()
                self.held_dropped += 1
            self._held.append((event["event_id"], topic, payload))
        self._wake.set()

    def publish_state(self, state: dict) -> None:
        self._state = state
        if self.connected:
            self.client.publish(self.topic("state"), json.dumps(state), qos=1, retain=True)

    def outbox_depth(self) -> int:
        return self.outbox.depth()

    def outbox_health(self) -> dict:
        with self._held_lock:
            held = len(self._held)
        return {"writable": self.writable, "held_in_memory": held,
                "dropped": self.outbox.dropped + self.held_dropped}

    def _cannot_write(self, exc: Exception) -> None:
        if self.writable:  # one line per episode, not one per event
            log.error("outbox cannot be written (%s): holding up to %d events in memory and "
                      "sending them directly", exc, HELD_MAX)
        self.writable = False

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
        self._save_held()
        self._drain_acks()
        if not self.connected:
            return
        while self._live and len(self._inflight) < self.window:  # live lane first
            row_id, topic, payload = self._live.popleft()
            if (row_id > max(self._last_row, self.outbox.dropped_through)
                    and self._publish_row(row_id, topic, payload)):
                self._sent_ahead.add(row_id)
        self._send_held()
        room = self.window - len(self._inflight)
        if room > 0:  # then the backlog, in order, skipping what the live lane sent
            for row_id, topic, payload in self.outbox.pending(self._last_row, room):
                if row_id in self._sent_ahead:
                    self._sent_ahead.discard(row_id)
                else:
                    self._publish_row(row_id, topic, payload)
                self._last_row = row_id
        self._drain_acks()

    def _publish_row(self, row_id: int, topic: str, payload: bytes) -> bool:
        try:
            info = self.client.publish(topic, mark_stale(payload, self.stale_accept_s), qos=1,
                                       retain=False)
        except (TypeError, ValueError) as exc:  # paho refuses it: it never will accept it
            log.error("outbox row %d cannot be published (%s): moved to outbox_rejected",
                      row_id, exc)
            self.outbox.reject(row_id, str(exc))
            return False
        self._inflight[info.mid] = row_id
        return True

    def _save_held(self) -> None:
        """Move held events into the outbox, oldest first, once it can be written again."""
        while True:
            with self._held_lock:
                if not self._held:
                    break
                event_id, topic, payload = self._held[0]
            try:
                row_id = self.outbox.add(event_id, topic, payload)
            except sqlite3.Error as exc:
                self._cannot_write(exc)
                return
            with self._held_lock:
                if self._held and self._held[0][0] == event_id:
                    self._held.popleft()
            if event_id not in self._held_sending:  # else already on its way: no second copy
                self._live.append((row_id, topic, payload))
        if self.writable or self._unsaved_acks:
            return
        try:  # nothing held (all delivered directly): is the disk back?
            self.outbox.probe()
        except sqlite3.Error:
            return
        self.writable = True
        log.warning("outbox writable again (%d events were dropped while it was not)",
                    self.held_dropped)

    def _send_held(self) -> None:
        """While the disk is full, send the held events directly (QoS 1, kept until PUBACK)."""
        with self._held_lock:
            waiting = [h for h in self._held if h[0] not in self._held_sending]
        for event_id, topic, payload in waiting:
            if len(self._inflight) >= self.window:
                break
            info = self.client.publish(topic, mark_stale(payload, self.stale_accept_s), qos=1,
                                       retain=False)
            self._inflight[info.mid] = event_id
            self._held_sending.add(event_id)

    def _drain_acks(self) -> None:
        done = self._unsaved_acks
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            ref = self._inflight.pop(mid, None)
            if isinstance(ref, str):  # a held event: delivered, nothing left to keep
                with self._held_lock:
                    self._held = deque(h for h in self._held if h[0] != ref)
                self._held_sending.discard(ref)
            elif ref is not None:
                done.append(ref)
                self._sent_ahead.discard(ref)
        try:
            self.outbox.delete(*done)
        except sqlite3.Error as exc:  # kept and deleted later: a full disk must not resend them
            self._cannot_write(exc)
            return
        done.clear()

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
        if msg.retain or len(msg.payload) > MAX_COMMAND_BYTES:
            # A retained command is replayed by the broker at every (re)connect: a command is
            # for now, once. The size cap bounds the work before the JSON is even parsed.
            self._drop_command(msg.topic, f"retained or over {MAX_COMMAND_BYTES} bytes")
            return
        try:
            payload = json.loads(msg.payload or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self._drop_command(msg.topic, f"payload is not a JSON object ({exc})")
            return
        try:
            self.on_command(leaf[4:], payload)
        except Exception:  # a bad command must not kill paho's network thread
            log.exception("command %r failed", msg.topic[:200])

    def _drop_command(self, topic: str, why: str) -> None:
        """Log a dropped command, but not every one of a flood (anyone on the broker can send)."""
        self._dropped_commands += 1
        n = self._dropped_commands
        if n <= 3 or (n & (n - 1)) == 0:  # the first few, then at powers of two
            log.warning("ignoring %r: %s (%d commands dropped so far)", topic[:200], why, n)

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
