"""The MQTT transport of the edge: one paho-mqtt 2.x client that carries the daemon's events,
state and availability to the broker and brings its commands back.

Topics under `<prefix>/<device>/`:
  availability  retained; `online` on connect, `offline` as the Last Will and on a clean stop
  event         one JSON message per decision, QoS 1, not retained, sent from the outbox
  state         retained health and cache summary (the latest only; never queued)
  door/<door>/event    the door's events, from the outbox like decisions (edge.daemon.door_link)
  door/<door>/state    retained door state (the latest only; sent again on reconnect)
  door/<door>/command  out, `[door] backend = "mqtt"`: now or never (`publish_direct`)
  cmd/<name>    in: commands (`verify`, `sync`), handed to `on_command`, which decides whether
                they may act (edge.daemon.commands)

Delivery: `publish_event` commits the event to the outbox (edge.daemon.outbox) and wakes the
sender thread, which hands at most `window` messages to paho and deletes a row only when its
PUBACK arrives; paho resends what is unacknowledged after a reconnect. The sender's lanes, in
order: the live lane (events decided by this run: a live decision must not wait behind an
outage's backlog), the events held in memory while the outbox cannot be written (sent
directly, saved to the outbox once it can be written again), then the backlog (rows left by an
earlier run, or beyond the live lane's memory) in id order. An accept leaving later than
`stale_accept_s` after its decision goes out as `unknown` (edge.daemon.decision_event.mark_stale).
A message may arrive twice (a PUBACK lost on its way back, a held event saved while in flight);
consumers drop duplicates by `event_id`.

Commands: retained messages (the broker replays them at every connect), oversized ones,
payloads nested deeper than MAX_JSON_DEPTH (a 4 KB `[[[...]]]` made json.loads raise
RecursionError) and payloads that are not a JSON object are dropped here, before any handler
sees them.

paho's network thread carries every command and every PUBACK: if it ends, the door is deaf and
its events pile up in the outbox. So every callback paho runs is guarded (an exception is
logged by type and place, never with the payload, counted, and the loop goes on), and a
supervisor thread restarts the network loop if it ends anyway and reports one stuck in a
callback; `loop_health()` says which (health: `mqtt.loop`, degraded while it is not ok).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from edge.daemon import discovery
from edge.daemon.decision_event import fit_message, mark_late, mark_stale
from edge.daemon.event_age import Born, born_now
from edge.daemon.outbox import HELD_MAX, HeldEvents, Outbox, Row
from edge.daemon.publisher import Publisher
from edge.daemon.retained_record import stale_retained, write_record

if TYPE_CHECKING:
    from pathlib import Path

    import paho.mqtt.client as mqtt

    from edge.daemon.config import MqttSettings

log = logging.getLogger(__name__)

CommandHandler = Callable[[str, dict[str, Any]], object]  # (name, payload); what it returns is not used
MAX_COMMAND_BYTES = 4096  # the API's cap on a claim body
MAX_JSON_DEPTH = 16  # a command is one flat object; json.loads recurses once per level
SUPERVISE_EVERY_S = 1.0  # how often the supervisor looks at paho's network thread
STUCK_AFTER_S = 20.0  # a callback running longer than this: the loop is stuck (WatchdogSec is 30)
RESTARTED_SHOWN_S = 60.0  # health stays degraded this long after the loop was restarted
LIVE_MAX = 1000  # events of this run remembered for the live lane (older ones wait their turn)
PAHO_QUEUE_MAX = 1000  # messages paho holds (our window is 20; retained state and discovery besides)
DISCOVERY_EVERY_S = 30.0  # Home Assistant's requests for discovery answered at most this often


class MqttPublisher(Publisher):
    """paho-mqtt 2.x client with availability, outbox-backed events, state and commands."""

    def __init__(self, settings: MqttSettings, device_id: str, outbox: Outbox, *,
                 on_command: CommandHandler | None = None, window: int = 100,
                 stale_accept_s: float = 0.0, door: str | None = None,
                 clock: Callable[[], Born | None] = born_now, retained_record: Path | None = None):
        self.s = settings
        self.device_id = device_id
        self.base = f"{settings.prefix}/{device_id}"
        self.outbox = outbox
        self.on_command = on_command
        self.door = door  # the door Home Assistant discovery announces (lock, binary sensors)
        self.window = window
        self.connected = False
        self._state: dict[str, Any] | None = None
        self._retained: dict[str, bytes] = {}  # leaf -> latest payload (door state)
        self._dropped_commands = 0
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._inflight: dict[int, int | str] = {}  # paho mid -> outbox row id (or held event_id)
        self._last_row = 0  # the backlog lane: every row up to this one has been handed to paho
        # The live lane: events of this run go out before the backlog, which follows in order.
        self._live: deque[Row] = deque(maxlen=LIVE_MAX)
        self._sent_ahead: set[int] = set()  # rows the live lane sent past the backlog cursor
        self._rewind = False  # set on each connection: resend whatever is not acknowledged
        self._discovery_asked = False  # Home Assistant asked for discovery again (its status topic)
        self._discovery_at = -DISCOVERY_EVERY_S  # when the last such request was answered (monotonic)
        # A full disk: events wait here (bounded) and go to the broker directly meanwhile.
        self.held = HeldEvents(HELD_MAX)
        self.writable = True
        self._unsaved_acks: list[int] = []
        self.stale_accept_s = stale_accept_s
        self.clock = clock  # the boot clock events are stamped and aged by (event_age)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # The network loop's supervision (see loop_health).
        self.handler_errors = 0
        self.loop_restarts = 0
        self.stuck_after_s = STUCK_AFTER_S
        self.restarted_shown_s = RESTARTED_SHOWN_S
        self._busy: tuple[str, float] | None = None  # (callback, monotonic start) while one runs
        self._restarted_at: float | None = None
        self._last_failure = ""
        self._loop_started = False
        self._supervisor: threading.Thread | None = None
        # The retained topics an earlier run announced and this one does not (a door renamed,
        # discovery turned off): emptied at connect, so that Home Assistant drops the entities
        # and nobody reads a state that is no longer kept (edge.daemon.retained_record).
        self._record = retained_record
        self._to_clear = stale_retained(retained_record, self._announced()) if retained_record else []
        self._record_due = False  # the record rewritten (by the sender) once a connection emptied them
        self.client = self._make_client()

    def _announced(self) -> list[str]:
        """The retained topics this run keeps: discovery configs, the door's state."""
        topics = [t for t, _ in discovery.messages(self.s.ha_prefix, self.device_id, self.topic, self.door)
                  ] if self.s.ha_discovery else []
        return topics + ([self.topic(f"door/{self.door}/state")] if self.door else [])

    def topic(self, leaf: str) -> str:
        return f"{self.base}/{leaf}"

    def _make_client(self) -> mqtt.Client:
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
        # paho's own queue holds at most our window; the outbox holds the rest on disk. Its
        # queue is bounded too: a publish beyond is refused (and retried), never held unbounded.
        client.max_inflight_messages_set(20)
        client.max_queued_messages_set(PAHO_QUEUE_MAX)
        client.on_connect = self._guard("on_connect", self._on_connect)
        client.on_disconnect = self._guard("on_disconnect", self._on_disconnect)
        client.on_publish = self._guard("on_publish", self._on_publish)
        client.on_message = self._guard("on_message", self._on_message)
        return client

    def _guard(self, name: str, callback: Callable[..., None]) -> Callable[..., None]:
        """`callback` as paho may call it on its network thread: an exception there used to end
        that thread (paho re-raises it), silencing every later command. Logged by type and
        place only (its text may quote the payload: a signature), counted, and survived."""
        def guarded(*args: Any) -> None:
            self._busy = (name, time.monotonic())
            try:
                callback(*args)
            except Exception as exc:
                self.handler_errors += 1
                n = self.handler_errors
                if n <= 3 or (n & (n - 1)) == 0:  # the first few, then at powers of two
                    log.error("mqtt %s failed (%s at %s); the network loop goes on (%d so far)",
                              name, type(exc).__name__, _where(exc), n)
                if name == "on_message" and len(args) >= 3:
                    self._drop_command(str(getattr(args[2], "topic", "")), "its handler failed")
            finally:
                self._busy = None
        return guarded

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        # connect_async + loop_start: the first connection and every reconnect happen in paho's
        # thread with backoff, so an unreachable broker never blocks or stops the daemon.
        self.client.connect_async(self.s.host, self.s.port, keepalive=self.s.keepalive)
        self.client.loop_start()
        self._loop_started = True
        self._thread = threading.Thread(target=self._sender, name="mqtt-outbox", daemon=True)
        self._thread.start()
        self._supervisor = threading.Thread(target=self._supervise, name="mqtt-supervisor", daemon=True)
        self._supervisor.start()

    def stop(self, timeout: float = 3.0) -> None:
        """Flush what can be flushed within `timeout`, say `offline`, disconnect."""
        deadline = time.monotonic() + timeout
        while self.connected and self._inflight and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        if self._thread:
            self._thread.join(timeout=2)
        if self._supervisor:  # before disconnect: it must not restart the loop that ends now
            self._supervisor.join(timeout=SUPERVISE_EVERY_S + 1)
        if self.connected:
            info = self.client.publish(self.topic("availability"), "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=max(0.1, deadline - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self.client.disconnect()
        self.client.loop_stop()

    # -- publishing ------------------------------------------------------------------------
    def publish_event(self, event: dict[str, Any], leaf: str = "event") -> None:
        """Commit the event to the outbox; when that fails (full disk) hold it in memory: the
        caller's decision is made, it must not be retried with a new timestamp."""
        topic, payload = self.topic(leaf), json.dumps(event, separators=(",", ":")).encode()
        born = self.clock()  # its age on the boot clock, for stale_accept_s (event_age)
        if not self.held:  # events already held go first: order is kept
            try:
                row_id = self.outbox.add(event["event_id"], topic, payload, born)
                self._live.append((row_id, topic, payload, born))
                self._wake.set()
                return
            except sqlite3.Error as exc:
                self._cannot_write(exc)
        self.held.hold(event["event_id"], topic, payload, born)
        self._wake.set()

    def publish_state(self, state: dict[str, Any]) -> None:
        self._state = state
        if self.connected:
            self.client.publish(self.topic("state"), json.dumps(state), qos=1, retain=True)

    def publish_retained(self, leaf: str, message: dict[str, Any]) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode()
        self._retained[leaf] = payload
        if self.connected:
            self.client.publish(self.topic(leaf), payload, qos=1, retain=True)

    def publish_direct(self, leaf: str, payload: bytes) -> bool:
        if not self.connected:
            return False
        # QoS 0: paho sends it now or drops it; a QoS 1 message it could not deliver (more than
        # 20 in flight, a connection gone quiet) was kept and sent after the reconnect: a late
        # unlock the edge had already reported as a relay fault
        info = self.client.publish(self.topic(leaf), payload, qos=0, retain=False)
        return bool(info.rc == 0)

    def outbox_depth(self) -> int:
        return self.outbox.depth()

    def outbox_health(self) -> dict[str, Any]:
        return {"writable": self.writable, "held_in_memory": len(self.held),
                "dropped": self.outbox.dropped + self.held.dropped}

    def _cannot_write(self, exc: Exception) -> None:
        if self.writable:  # one line per episode, not one per event
            log.error("outbox cannot be written (%s): holding up to %d events in memory and "
                      "sending them directly", exc, self.held.max_events)
        self.writable = False

    def outbox_rejected(self) -> int:
        return self.outbox.rejected()

    def sender_alive(self) -> bool:
        """False once the outbox thread has ended while the publisher runs (reported in state)."""
        return self._thread is not None and (self._thread.is_alive() or self._stop.is_set())

    # -- the network loop's supervision ---------------------------------------------------
    def _loop_alive(self) -> bool:
        # paho clears Client._thread when its network thread ends (loop_forever returned or
        # raised); loop_start refuses to start a second one while it is set.
        thread = getattr(self.client, "_thread", None)
        return thread is not None and thread.is_alive()

    def _supervise(self) -> None:
        while not self._stop.wait(SUPERVISE_EVERY_S):
            try:
                if not self._loop_alive() and not self._stop.is_set():
                    self._restart_loop()
            except Exception as exc:  # the supervisor itself must not end quietly either
                log.error("mqtt supervisor failed (%s at %s)", type(exc).__name__, _where(exc))

    def _restart_loop(self) -> None:
        self.loop_restarts += 1
        self._last_failure = "paho's network loop ended"
        self._restarted_at = time.monotonic()
        self._busy = None
        log.error("mqtt network loop ended: reconnecting and restarting it (restart %d)", self.loop_restarts)
        if getattr(self.client, "_thread", None) is not None:  # ended, not yet cleared
            self.client.loop_stop()
        # On a fresh connection: the packet whose handling ended the thread is still in paho's
        # input buffer, and the same loop would hand it to the same callback again. The events
        # not acknowledged go again from the outbox after the reconnect, as after any other.
        self.connected = False
        try:
            self.client.reconnect()
        except Exception as exc:  # the restarted loop retries with backoff: restart it anyway
            log.warning("mqtt reconnect failed (%s); the restarted loop retries", type(exc).__name__)
        self.client.loop_start()

    def loop_health(self) -> dict[str, Any]:
        """The network loop: `status` ok, dead (ended, a restart pending), stuck (a callback
        running longer than `stuck_after_s`) or restarted (within `restarted_shown_s`); the
        `reason` when not ok; restarts and handler failures since start."""
        now = time.monotonic()
        status, reason = "ok", ""
        busy = self._busy
        if self._loop_started and not self._stop.is_set() and not self._loop_alive():
            status, reason = "dead", "paho's network loop has ended (commands and acknowledgements stopped)"
        elif busy is not None and now - busy[1] > self.stuck_after_s:
            status, reason = "stuck", f"paho's network loop stuck in {busy[0]} for {now - busy[1]:.0f} s"
        elif self._restarted_at is not None and now - self._restarted_at < self.restarted_shown_s:
            status = "restarted"
            reason = f"{self._last_failure}: restarted {now - self._restarted_at:.0f} s ago"
        return {"status": status, "reason": reason, "restarts": self.loop_restarts,
                "handler_errors": self.handler_errors}

    # -- the sender thread: lanes and acknowledgements ---------------------------------------
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
        if self._record_due and self._record is not None:  # off paho's thread: the write is fsync'd
            self._record_due = False
            write_record(self._record, self._announced())
        if self._rewind:  # a new connection: paho dropped what it had of ours (_on_connect)
            self._rewind = False
            self._inflight.clear()
            self._sent_ahead.clear()
            self._last_row = 0  # every row still in the outbox goes again, in order
            self.held.unsend_all()
        self._discovery_when_due()
        while self._live and len(self._inflight) < self.window:  # live lane first
            row_id, topic, payload, born = self._live.popleft()
            if (row_id > max(self._last_row, self.outbox.dropped_through)
                    and self._publish_row(row_id, topic, payload, born)):
                self._sent_ahead.add(row_id)
        self._send_held()
        room = self.window - len(self._inflight)
        if room > 0:  # then the backlog, in order, skipping what the live lane sent
            for row_id, topic, payload, born in self.outbox.pending(self._last_row, room):
                if row_id in self._sent_ahead:
                    self._sent_ahead.discard(row_id)
                elif self._publish_row(row_id, topic, payload, born) is None:
                    break  # paho's queue is full: this row and the rest on the next pass
                self._last_row = row_id
        self._drain_acks()

    def _publish_row(self, row_id: int, topic: str, payload: bytes, born: Born | None) -> bool | None:
        """True: on its way (its acknowledgement deletes the row); False: refused for good (set
        aside); None: paho did not take it now (its queue full): the row stays, sent later."""
        message = self._fit(payload, born)
        if message is None:  # the broker would drop the connection on it, again and again
            self.outbox.reject(row_id, f"over [mqtt] max_message_bytes ({self.s.max_message_bytes})")
            return False
        try:
            info = self.client.publish(topic, message, qos=1, retain=False)
        except (TypeError, ValueError) as exc:  # paho refuses it: it never will accept it
            log.error("outbox row %d cannot be published (%s): moved to outbox_rejected",
                      row_id, exc)
            self.outbox.reject(row_id, str(exc))
            return False
        if not _taken(info):
            # Not queued, yet it has a message id: mapped, the acknowledgement of another
            # message with that id (ids wrap at 65,535) deleted this event unsent.
            return None
        self._inflight[info.mid] = row_id
        return True

    def _fit(self, payload: bytes, born: Born | None) -> bytes | None:
        """The event as it leaves now: judged stale or not, marked late or not, within the
        broker's message size (without its face image if need be; None when even that is over it)."""
        born_now = self.clock()
        judged = mark_late(mark_stale(payload, self.stale_accept_s, born=born, born_now=born_now), born, born_now)
        message = fit_message(judged, self.s.max_message_bytes)
        if message is not judged:
            log.warning("an event over [mqtt] max_message_bytes (%d) %s", self.s.max_message_bytes,
                        "is set aside" if message is None else "goes without its face image")
        return message

    def _save_held(self) -> None:
        """Move held events into the outbox, oldest first, once it can be written again."""
        while True:
            oldest = self.held.oldest()
            if oldest is None:
                break
            event_id, topic, payload, born = oldest
            try:
                row_id = self.outbox.add(event_id, topic, payload, born)
            except sqlite3.Error as exc:
                self._cannot_write(exc)
                return
            self.held.saved(event_id)
            if not self.held.is_sending(event_id):  # else already on its way: no second copy
                self._live.append((row_id, topic, payload, born))
        if self.writable or self._unsaved_acks:
            return
        try:  # nothing held (all delivered directly): is the disk back?
            self.outbox.probe()
        except sqlite3.Error:
            return
        self.writable = True
        log.warning("outbox writable again (%d events were dropped while it was not)",
                    self.held.dropped)

    def _send_held(self) -> None:
        """While the disk is full, send the held events directly (QoS 1, kept until PUBACK)."""
        for event_id, topic, payload, born in self.held.unsent():
            if len(self._inflight) >= self.window:
                break
            message = self._fit(payload, born)
            if message is None:  # never deliverable (the disk is full: no outbox_rejected to keep it in)
                self.held.delivered(event_id)
                self.held.dropped += 1  # counted in mqtt.outbox.dropped
                continue
            info = self.client.publish(topic, message, qos=1, retain=False)
            if not _taken(info):  # paho's queue is full: held, sent on a later pass
                break
            self._inflight[info.mid] = event_id
            self.held.sending(event_id)

    def _drain_acks(self) -> None:
        done = self._unsaved_acks
        while True:
            try:
                mid = self._acks.get_nowait()
            except queue.Empty:
                break
            ref = self._inflight.pop(mid, None)
            if isinstance(ref, str):  # a held event: delivered, nothing left to keep
                self.held.delivered(ref)
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
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                    properties: Any) -> None:
        if reason_code.is_failure:
            log.warning("mqtt connect refused: %s", reason_code)
            return
        # What paho kept from before goes, before it resends it (right after this callback):
        # events go again from the outbox, marked stale by then if they are (paho resent the
        # bytes of the time, so a link that went quiet delivered an accept as an accept long
        # after stale_accept_s), and retained states as they are now (paho's older copies,
        # resent after the new ones, were what the broker kept: a door shown unlocked).
        forget_unsent(client)
        self._rewind = True  # the sender resends from the outbox (before anything else)
        self.connected = True
        log.info("mqtt connected to %s:%s", self.s.host, self.s.port)
        client.publish(self.topic("availability"), "online", qos=1, retain=True)
        client.subscribe(self.topic("cmd/+"), qos=1)
        for gone in self._to_clear:  # an empty retained message deletes the broker's copy
            client.publish(gone, b"", qos=1, retain=True)
        self._record_due = True
        if self.s.ha_discovery:
            client.subscribe(discovery.status_topic(self.s.ha_prefix), qos=1)
            self._publish_discovery()
        self._republish_retained(client)
        self._wake.set()

    def _republish_retained(self, client: mqtt.Client) -> None:
        """The retained state and door topics as they are now. Another thread (door-publish)
        may store and send a newer one meanwhile, its send before ours of the older: the broker
        would keep the older (a door shown unlocked after it relocked). So what changed while
        these went out goes again, last; a change after that is sent by its own thread after."""
        state, retained = self._state, dict(self._retained)
        if state is not None:
            client.publish(self.topic("state"), json.dumps(state), qos=1, retain=True)
        for leaf, payload in retained.items():
            client.publish(self.topic(leaf), payload, qos=1, retain=True)
        if self._state is not state and self._state is not None:
            client.publish(self.topic("state"), json.dumps(self._state), qos=1, retain=True)
        for leaf, payload in list(self._retained.items()):
            if retained.get(leaf) is not payload:
                client.publish(self.topic(leaf), payload, qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any,
                       properties: Any) -> None:
        if self.connected:
            log.warning("mqtt disconnected (%s); reconnecting with backoff", reason_code)
        self.connected = False

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason_code: Any,
                    properties: Any) -> None:
        self._acks.put(mid)
        self._wake.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        if msg.topic == discovery.status_topic(self.s.ha_prefix):
            if discovery.asks_again(msg.payload):
                # Home Assistant restarted: it forgot our entities. Answered by the sender at
                # most once per DISCOVERY_EVERY_S: anyone can publish `online` there, and each
                # answer is six retained messages (a flood of 30,000 filled paho's queue).
                self._discovery_asked = True
                self._wake.set()
            return
        leaf = msg.topic[len(self.base) + 1:]
        if not leaf.startswith("cmd/") or self.on_command is None:
            return
        if msg.retain or len(msg.payload) > MAX_COMMAND_BYTES:
            # A retained command is replayed by the broker at every (re)connect: a command is
            # for now, once. The size cap bounds the work before the JSON is even parsed.
            self._drop_command(msg.topic, f"retained or over {MAX_COMMAND_BYTES} bytes")
            return
        if json_depth(msg.payload) > MAX_JSON_DEPTH:
            # json.loads recurses once per level: 2,000 `[` raised RecursionError on this thread
            self._drop_command(msg.topic, f"payload nested deeper than {MAX_JSON_DEPTH}")
            return
        try:
            payload = json.loads(msg.payload or b"{}")
            if not isinstance(payload, dict):
                raise ValueError("not an object")
        except (ValueError, RecursionError) as exc:
            self._drop_command(msg.topic, f"payload is not a JSON object ({type(exc).__name__})")
            return
        # what on_command raises is caught (and counted) by _guard: the loop goes on
        self.on_command(leaf[4:], payload)

    def _drop_command(self, topic: str, why: str) -> None:
        """Log a dropped command, but not every one of a flood (anyone on the broker can send)."""
        self._dropped_commands += 1
        n = self._dropped_commands
        if n <= 3 or (n & (n - 1)) == 0:  # the first few, then at powers of two
            log.warning("ignoring %r: %s (%d commands dropped so far)", topic[:200], why, n)

    def _publish_discovery(self) -> None:
        for topic, config in discovery.messages(self.s.ha_prefix, self.device_id, self.topic, self.door):
            self.client.publish(topic, config, qos=1, retain=True)

    def _discovery_when_due(self) -> None:
        """Home Assistant's request for discovery, once the last answer is DISCOVERY_EVERY_S old
        (however many requests came meanwhile: one answer)."""
        now = time.monotonic()
        if self._discovery_asked and now - self._discovery_at >= DISCOVERY_EVERY_S:
            self._discovery_asked, self._discovery_at = False, now
            self._publish_discovery()


def json_depth(data: bytes | bytearray) -> int:
    """The deepest nesting of `[` and `{` in `data` outside JSON strings (not a validation:
    json.loads does that, once this says it will not recurse too deep)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def _where(exc: BaseException) -> str:
    """file:line where `exc` was raised: enough to find the bug, nothing of the data."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return "?"
    last = frames[-1]
    return f"{last.filename.rsplit('/', 1)[-1]}:{last.lineno}"


def _taken(info) -> bool:
    """Did paho take the message (sent, or queued for the connection to come back)? A full
    queue (or a message id still in use) is not taken, yet the answer carries an id."""
    import paho.mqtt.client as mqtt

    return info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN)


def forget_unsent(client: mqtt.Client) -> int:
    """Drop every message paho holds for sending or awaiting acknowledgement (how many). paho
    has no call for it: its own queue and in-flight count, under its own lock (paho-mqtt 2.x,
    pinned in requirements.lock; the reconnect tests fail if that changes)."""
    with client._out_message_mutex:
        dropped = len(client._out_messages)
        client._out_messages.clear()
        client._inflight_messages = 0
    return dropped
