"""Events over a real mosquitto: availability, outbox delivery, broker outage, restart replay."""

from __future__ import annotations

import json
import time

from edge.daemon.config import MqttSettings
from edge.daemon.decision_event import mark_late
from edge.daemon.mqtt import MqttPublisher
from edge.daemon.outbox import Outbox
from tests.conftest import ROOT, wait_until
from tests.support.broker import mqtt_client, sample_event, schema_errors


def _publisher(broker, tmp_path, device="door-t", **kw):
    settings = MqttSettings(host=broker.host, port=broker.port, prefix="ev", keepalive=5,
                            reconnect_max_s=1, **kw)
    return MqttPublisher(settings, device, Outbox(tmp_path / "outbox.db"))


def test_availability_is_retained_online_and_offline_after_clean_stop(mosquitto, subscribe, tmp_path):
    pub = _publisher(mosquitto, tmp_path)
    pub.start()
    assert wait_until(lambda: pub.connected)
    late = subscribe("ev/door-t/availability")  # joins after: sees the retained value
    assert late.wait_for(lambda: late.messages, 10)
    assert late.messages[-1][1:] == (b"online", True)
    pub.stop()
    assert late.wait_for(lambda: late.messages[-1][1] == b"offline", 10)


def test_last_will_says_offline_when_the_daemon_dies(mosquitto, subscribe, tmp_path):
    pub = _publisher(mosquitto, tmp_path)
    pub.start()
    assert wait_until(lambda: pub.connected)
    sub = subscribe("ev/door-t/availability")
    assert sub.wait_for(lambda: sub.messages and sub.messages[-1][1] == b"online", 10)
    # Simulate death: drop the socket without a DISCONNECT packet, so the broker sends the will.
    pub._stop.set()
    pub.client.loop_stop()
    pub.client.socket().close()
    assert sub.wait_for(lambda: sub.messages[-1][1] == b"offline", 20)


def test_events_are_delivered_in_order_and_removed_from_the_outbox(mosquitto, subscribe, tmp_path):
    sub = subscribe("ev/door-t/event")
    pub = _publisher(mosquitto, tmp_path)
    pub.start()
    events = [sample_event() for i in range(30)]
    for e in events:
        pub.publish_event(e)
    assert sub.wait_for(lambda: len(sub.messages) >= 30, 15)
    got = sub.json()
    assert [g["event_id"] for g in got] == [e["event_id"] for e in events]
    assert all(not retain for _, _, retain in sub.messages)
    assert wait_until(lambda: pub.outbox_depth() == 0)
    pub.stop()


def test_events_decided_while_the_broker_is_down_arrive_once_it_is_back(mosquitto, subscribe, tmp_path):
    sub = subscribe("ev/door-t/event", client_id="persistent-consumer")
    pub = _publisher(mosquitto, tmp_path)
    pub.start()
    assert wait_until(lambda: pub.connected)
    first = sample_event()
    pub.publish_event(first)
    assert sub.wait_for(lambda: len(sub.messages) == 1, 10)
    mosquitto.stop()
    assert wait_until(lambda: not pub.connected)
    during = [sample_event() for i in range(1, 11)]
    for e in during:
        pub.publish_event(e)
    assert pub.outbox_depth() == 10  # held on disk, not lost
    mosquitto.start()
    want = {e["event_id"] for e in [first, *during]}
    assert sub.wait_for(lambda: {m["event_id"] for m in sub.json()} >= want, 30)
    assert wait_until(lambda: pub.outbox_depth() == 0)
    pub.stop()


def test_outbox_left_by_a_dead_process_is_replayed_in_order_by_the_next(mosquitto, subscribe, tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    old = [sample_event() for i in range(5)]
    for e in old:
        box.add(e["event_id"], "ev/door-t/event", json.dumps(e).encode())
    box.close()  # the process that wrote them is gone before the broker saw them
    sub = subscribe("ev/door-t/event")
    pub = _publisher(mosquitto, tmp_path)
    pub.start()
    assert sub.wait_for(lambda: len(sub.messages) >= 5, 15)
    assert [m["event_id"] for m in sub.json()] == [e["event_id"] for e in old]
    pub.stop()


def test_commands_reach_the_handler_and_bad_payloads_are_ignored(mosquitto, tmp_path):
    got = []
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, prefix="ev")
    pub = MqttPublisher(settings, "door-t", Outbox(tmp_path / "o.db"),
                        on_command=lambda name, payload: got.append((name, payload)))
    pub.start()
    assert wait_until(lambda: pub.connected)
    time.sleep(0.3)  # subscription settles
    with mqtt_client(mosquitto) as c:
        c.publish("ev/door-t/cmd/verify", b"not json", qos=1).wait_for_publish(5)
        c.publish("ev/door-t/cmd/verify", json.dumps({"person_id": "p1"}), qos=1).wait_for_publish(5)
        c.publish("ev/door-t/cmd/sync", b"", qos=1).wait_for_publish(5)
        assert wait_until(lambda: len(got) == 2)
        assert got == [("verify", {"person_id": "p1"}), ("sync", {})]
        assert pub.connected  # the bad payload did not break the client
    pub.stop()


def test_home_assistant_discovery_is_republished_when_home_assistant_comes_online(mosquitto, subscribe, tmp_path):
    pub = _publisher(mosquitto, tmp_path, ha_discovery=True)
    pub.start()
    assert wait_until(lambda: pub.connected)
    sub = subscribe("homeassistant/sensor/+/config")
    assert sub.wait_for(lambda: len(sub.messages) >= 2, 10)  # retained
    cfg = json.loads(sub.messages[0][1])
    assert cfg["state_topic"] == "ev/door-t/event" and cfg["availability_topic"] == "ev/door-t/availability"
    n = len(sub.messages)
    with mqtt_client(mosquitto) as c:
        c.publish("homeassistant/status", "online", qos=1).wait_for_publish(5)
    assert sub.wait_for(lambda: len(sub.messages) >= n + 2, 10)
    pub.stop()


def test_an_unpublishable_outbox_row_is_set_aside_and_the_events_after_it_still_arrive(mosquitto, subscribe, tmp_path):
    box = Outbox(tmp_path / "outbox.db")
    bad = sample_event()
    # A row paho refuses (a wildcard topic: hand-edited file, another version's prefix).
    box.add(bad["event_id"], "ev/door-t/event/#", json.dumps(bad).encode())
    box.close()
    sub = subscribe("ev/door-t/event")
    pub = _publisher(mosquitto, tmp_path)
    pub.start()
    good = [sample_event() for i in range(1, 4)]
    for e in good:
        pub.publish_event(e)
    assert sub.wait_for(lambda: len(sub.messages) >= 3, 15)
    assert [m["event_id"] for m in sub.json()] == [e["event_id"] for e in good]
    assert wait_until(lambda: pub.outbox_depth() == 0)
    assert pub.outbox_rejected() == 1  # kept aside for a human, not dropped
    assert pub.sender_alive()
    pub.stop()


def test_a_flood_of_discovery_requests_loses_no_decision_event(mosquitto, subscribe, tmp_path):
    """Anyone on the broker can publish `online` on Home Assistant's status topic, and each was
    answered at once with six retained messages into paho's unbounded queue. 30,000 of them
    filled it to its 65,535 message ids; paho then refused the next event's publish (not queued)
    yet gave it an id, the edge mapped that id to the event's outbox row, and the broker's
    acknowledgement of another message with that id deleted the row: 0 of 20 events arrived.
    Now a refused publish keeps its row for the next pass, requests are answered at most once per
    DISCOVERY_EVERY_S, and paho's queue is bounded."""
    pub = _publisher(mosquitto, tmp_path, ha_discovery=True)
    pub.start()
    assert wait_until(lambda: pub.connected)
    configs = subscribe("homeassistant/+/+/config")
    events = subscribe("ev/door-t/event")
    assert configs.wait_for(lambda: len(configs.messages) >= 2, 10)  # retained, on connect
    first = len(configs.messages)
    with mqtt_client(mosquitto) as flood:
        for _ in range(30_000):
            flood.publish("homeassistant/status", "online", qos=0)
        flood.publish("homeassistant/status", "online", qos=1).wait_for_publish(30)
    sent = [sample_event() for _ in range(20)]
    for e in sent:
        pub.publish_event(e)
    try:
        assert events.wait_for(lambda: len(events.messages) >= 20, 60), len(events.messages)
        assert sorted(m["event_id"] for m in events.json()) == sorted(e["event_id"] for e in sent)
        assert wait_until(lambda: pub.outbox_depth() == 0, 30)
        time.sleep(1)
        # the first request answered, the other 30,000 within DISCOVERY_EVERY_S at most once more
        assert first < len(configs.messages) <= 3 * first, (first, len(configs.messages))
    finally:
        pub.stop()


def door_state(state: str, second: int) -> dict:
    return {"timestamp": f"2026-12-07T10:00:0{second}.000+00:00", "device": "door-t", "door": "main", "state": state,
            "mode": "normal", "locked": state == "locked", "contact": "closed", "tamper": False, "alarm": False,
            "prealarm": False}


def test_after_a_link_that_went_quiet_events_are_marked_stale_and_the_door_state_is_the_latest(
        mosquitto, subscribe, tmp_path):
    """A link that goes quiet (Wi-Fi lost: TCP notices nothing until the keepalive does): paho
    kept what it had been handed and resent the same bytes after the reconnect. An accept
    decided before the outage arrived as an accept long after stale_accept_s (a controller
    would open for someone long gone), and the door's retained state went back to `unlocked`
    (paho's older copy, resent after the latest). Now the outbox sends the events again, judged
    when they leave, and the latest state is the one the broker keeps."""
    from tests.support.link import QuietLink

    link = QuietLink(mosquitto.port, mosquitto.host)
    sub = subscribe("ev/door-t/event")
    settings = MqttSettings(host=mosquitto.host, port=link.port, prefix="ev", keepalive=5, reconnect_max_s=1)
    pub = MqttPublisher(settings, "door-t", Outbox(tmp_path / "outbox.db"), stale_accept_s=2.0)
    pub.start()
    try:
        assert wait_until(lambda: pub.connected)
        link.mode = "quiet"
        accept = sample_event(decision="accept", person_id="alice")
        pub.publish_event(accept)
        pub.publish_retained("door/main/state", door_state("unlocked", 1))
        assert wait_until(lambda: not pub.connected, 20)  # the keepalive noticed
        pub.publish_retained("door/main/state", door_state("locked", 2))  # relocked meanwhile
        link.mode = "refuse"
        time.sleep(1.0)
        link.mode = "pass"
        assert sub.wait_for(lambda: any(m["event_id"] == accept["event_id"] for m in sub.json()), 30)
        (arrived,) = [m for m in sub.json() if m["event_id"] == accept["event_id"]]
        assert (arrived["decision"], arrived["reason"]) == ("unknown", "stale_accept")
        assert wait_until(lambda: pub.outbox_depth() == 0)
        state = subscribe("ev/door-t/door/main/state")  # what the broker keeps, read by a newcomer
        assert state.wait_for(lambda: len(state.json("/door/main/state")) >= 1, 10)
        time.sleep(0.5)
        assert state.json("/door/main/state")[-1] == door_state("locked", 2)
    finally:
        pub.stop()
        link.close()


def test_an_event_over_the_brokers_message_limit_holds_back_no_other(tmp_path):
    """A broker drops the connection on a message over its limit (mosquitto's max_packet_size,
    a cloud broker's 128 KB), and paho sent that event first again after every reconnect: one
    event with a large face image held back every event after it, across restarts. Over
    `[mqtt] max_message_bytes` it now goes without its face image, or is set aside."""
    from edge.dev.devstack import Broker
    from tests.support.broker import Subscriber

    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker", conf="max_packet_size 8192\n").start()
    try:
        sub = Subscriber(broker, "ev/door-t/event")
        settings = MqttSettings(host=broker.host, port=broker.port, prefix="ev", keepalive=5, reconnect_max_s=1,
                                max_message_bytes=8000)
        pub = MqttPublisher(settings, "door-t", Outbox(tmp_path / "outbox.db"))
        pub.start()
        assert wait_until(lambda: pub.connected)
        events = [sample_event(), sample_event(face_image="QUJD" * 3000), sample_event(camera="x" * 9000),
                  *[sample_event() for _ in range(3)]]
        for e in events:
            pub.publish_event(e)
        wanted = {e["event_id"] for i, e in enumerate(events) if i != 2}
        assert sub.wait_for(lambda: {m["event_id"] for m in sub.json()} >= wanted, 20)
        (with_image,) = [m for m in sub.json() if m["event_id"] == events[1]["event_id"]]
        assert "face_image" not in with_image  # the decision went, without its image
        assert wait_until(lambda: pub.outbox_depth() == 0 and pub.outbox_rejected() == 1)  # the other set aside
        pub.stop()
        sub.close()
    finally:
        broker.stop()


class BootClock:
    """The boot clock a publisher stamps and ages events by (edge.daemon.event_age), moved by
    hand: the wall clock stays the real one, so moving this one is a wall clock stepped back."""

    def __init__(self, boot: str = "boot-a", at: float = 100.0):
        self.boot, self.at = boot, at

    def __call__(self):
        from edge.daemon.event_age import Born

        return Born(self.boot, self.at)


def test_an_accept_that_waited_is_stale_even_when_the_wall_clock_was_set_back_meanwhile(
        mosquitto, subscribe, tmp_path):
    """A Pi has no real-time clock: NTP steps its wall clock after boot, backwards too. An accept
    aged by its wall-clock timestamp looked as fresh after a step back as when it was decided:
    decided, held 30 s while the broker was away, the clock set back 30 s meanwhile, it arrived
    as an accept (stale_accept_s 2), and a controller opened for someone long gone. Aged on the
    boot clock, which no time setting moves, it goes out stale."""
    clock = BootClock()
    sub = subscribe("ev/door-t/event")
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, prefix="ev", keepalive=5, reconnect_max_s=1)
    pub = MqttPublisher(settings, "door-t", Outbox(tmp_path / "outbox.db"), stale_accept_s=2.0, clock=clock)
    pub.start()
    try:
        assert wait_until(lambda: pub.connected)
        mosquitto.stop()
        assert wait_until(lambda: not pub.connected)
        accept = sample_event(decision="accept", person_id="alice")
        pub.publish_event(accept)
        waited_from = clock()
        clock.at += 30.0  # 30 s went by; the wall clock, stepped back 30 s, shows no time passing
        fresh = sample_event(decision="accept", person_id="bob")
        pub.publish_event(fresh)  # decided just now: goes as the accept it is
        mosquitto.start()
        assert sub.wait_for(lambda: len(sub.json()) == 2, 30)
        got = {m["event_id"]: m for m in sub.json()}
        late = got[accept["event_id"]]
        assert (late["decision"], late["reason"], late["stale_s"]) == ("unknown", "stale_accept", 30.0)
        assert got[fresh["event_id"]]["decision"] == "accept"
        # every message that waited says how long, a door event too (a backlog's grant sent
        # after the door's current state looked current)
        assert late["late_s"] == 30.0 and "late_s" not in got[fresh["event_id"]]
        assert not schema_errors("ev/door-t/event", json.dumps(late).encode())
        grant = json.loads((ROOT / "edge/schemas/examples/door-event.json").read_text())
        grant["timestamp"] = sample_event()["timestamp"]
        marked = json.loads(mark_late(json.dumps(grant).encode(), waited_from, clock()))
        assert marked["late_s"] == 30.0 and not schema_errors("ev/door-t/door/main/event", json.dumps(marked).encode())
    finally:
        pub.stop()


def test_an_accept_left_in_the_outbox_before_a_reboot_goes_out_stale_and_older_rows_still_go(
        mosquitto, subscribe, tmp_path):
    """An accept stored before a reboot waited through it, however little its timestamp says
    (a Pi boots on the time it was shut down at): it leaves stale. Rows of an outbox written by
    an older version (no boot stamp) are read and sent, aged by their timestamp as before."""
    import sqlite3

    legacy = sample_event(decision="accept", person_id="carol")
    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,"
               " topic TEXT NOT NULL, payload BLOB NOT NULL, created TEXT NOT NULL DEFAULT '')")
    db.execute("INSERT INTO outbox (event_id, topic, payload) VALUES (?,?,?)",
               (legacy["event_id"], "ev/door-t/event", json.dumps(legacy, separators=(",", ":")).encode()))
    db.commit()
    db.close()
    before = Outbox(tmp_path / "outbox.db")
    rebooted = sample_event(decision="accept", person_id="alice")
    before.add(rebooted["event_id"], "ev/door-t/event", json.dumps(rebooted, separators=(",", ":")).encode(),
               BootClock("boot-a", 5000.0)())
    before.close()

    sub = subscribe("ev/door-t/event")
    settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, prefix="ev", keepalive=5, reconnect_max_s=1)
    pub = MqttPublisher(settings, "door-t", Outbox(tmp_path / "outbox.db"), stale_accept_s=2.0,
                        clock=BootClock("boot-b", 12.0))
    pub.start()
    try:
        assert sub.wait_for(lambda: len(sub.json()) == 2, 30)
        got = {m["event_id"]: m for m in sub.json()}
        assert (got[rebooted["event_id"]]["decision"], got[rebooted["event_id"]]["reason"]) == (
            "unknown", "stale_accept")
        assert got[rebooted["event_id"]]["stale_s"] >= 12.0  # at least the time since this boot
        assert got[legacy["event_id"]]["decision"] == "accept"  # seconds old by its timestamp
        assert wait_until(lambda: pub.outbox_depth() == 0)
    finally:
        pub.stop()


def test_events_are_stamped_with_the_kernels_boot_id_and_boot_clock():
    from pathlib import Path

    from edge.daemon.event_age import born_now

    born = born_now()
    assert born is not None and born.boot == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert time.monotonic() - 1 <= born.at <= time.clock_gettime(time.CLOCK_BOOTTIME)  # never stepped


def test_home_assistant_keeps_no_entity_of_a_door_renamed_and_names_only_accepted_persons(
        mosquitto, subscribe, tmp_path):
    """A door renamed (`[door] name`), discovery turned off or the device renamed left the last
    run's discovery configs and door state retained: Home Assistant kept the old lock and
    sensors, available, with their last state. The record of what was announced lets the next
    run empty them. And "Last person" named the claimed person of a refused claim (an
    automation on it fired for the impostor); the attributes carried the face image."""
    import jinja2

    from edge.daemon.retained_record import FILE_NAME

    record = tmp_path / FILE_NAME

    def publisher(door: str, discovery_on: bool = True) -> MqttPublisher:
        settings = MqttSettings(host=mosquitto.host, port=mosquitto.port, prefix="ev", keepalive=5,
                                reconnect_max_s=1, ha_discovery=discovery_on)
        return MqttPublisher(settings, "door-t", Outbox(tmp_path / f"outbox-{door}.db"), door=door,
                             retained_record=record)

    first = publisher("main")
    first.start()
    first.publish_retained("door/main/state", {"door": "main", "locked": True})
    assert wait_until(lambda: first.connected) and wait_until(record.exists)  # written once connected
    first.stop()
    configs = subscribe("homeassistant/#")
    assert configs.wait_for(lambda: any("door_main_lock" in t for t, _, _ in configs.messages), 10)
    renamed = publisher("front")
    renamed.start()
    assert wait_until(lambda: renamed.connected)
    try:
        assert configs.wait_for(lambda: any(t.endswith("door_main_lock/config") and p == b""
                                            for t, p, _ in configs.messages), 10)
    finally:
        renamed.stop()
    with mqtt_client(mosquitto) as c:  # what a consumer connecting now is handed
        kept: dict[str, bytes] = {}
        c.on_message = lambda cl, u, m: kept.__setitem__(m.topic, m.payload)
        c.subscribe("#", qos=1)
        time.sleep(1.0)
    assert not any("door_main" in t or "/door/main/" in t for t in kept), sorted(kept)
    assert any("door_front_lock" in t for t in kept)

    person = json.loads(kept["homeassistant/sensor/edge_verifier_door_t_person/config"])
    assert person["force_update"] is True

    def render(template: str, event: dict) -> str:
        return jinja2.Environment().from_string(template).render(value_json=event)

    refused_claim = {**sample_event(decision="reject", person_id="madonna"), "person_name": "Madonna"}
    accepted = {**sample_event(decision="accept", person_id="madonna", admits=True, why_not=None),
                "person_name": "Madonna", "face_image": "A" * 20_000}
    # a print of her matched with liveness "flag": an accept, which the door refuses
    print_matched = {**accepted, "admits": False, "why_not": "presentation_attack"}
    assert render(person["value_template"], refused_claim) == "none"
    assert render(person["value_template"], print_matched) == "none"
    assert render(person["value_template"], accepted) == "Madonna"
    attributes = json.loads(render(person["json_attributes_template"], accepted))
    assert attributes["person_id"] == "madonna" and "face_image" not in attributes
    assert json.loads(render(person["json_attributes_template"], refused_claim))["person_id"] is None


def test_a_door_state_sent_while_the_connection_resends_them_is_the_one_the_broker_keeps(
        mosquitto, subscribe, tmp_path):
    """On a (re)connection the retained door state goes out again as it is. The door's own thread
    (door-publish) may store and send a newer one meanwhile, its send landing before the
    connection's of the older: the broker kept the older, a door shown unlocked after it had
    relocked. The interleaving is forced: the relock is stored and sent inside the resend."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.reasoncodes import ReasonCode

    pub = _publisher(mosquitto, tmp_path)
    pub.start()
    assert wait_until(lambda: pub.connected)
    pub.publish_retained("door", {"state": "unlocked"})
    real_publish, armed = pub.client.publish, [True]

    def relock_sent_first(topic, payload=None, *args, **kwargs):
        if armed[0] and topic.endswith("/door") and b"unlocked" in bytes(payload):
            armed[0] = False
            pub.publish_retained("door", {"state": "locked"})  # the door-publish thread, first
        return real_publish(topic, payload, *args, **kwargs)

    pub.client.publish = relock_sent_first  # type: ignore[method-assign]
    pub._on_connect(pub.client, None, None, ReasonCode(PacketTypes.CONNACK, "Success"), None)
    pub.client.publish = real_publish  # type: ignore[method-assign]
    time.sleep(0.5)
    late = subscribe("ev/door-t/door")  # joins after: sees what the broker kept
    assert late.wait_for(lambda: len(late.messages) >= 1, 10)
    assert json.loads(late.messages[-1][1]) == {"state": "locked"} and not armed[0]
    pub.stop()


def test_an_accept_decided_long_after_its_frame_leaves_stale_and_events_say_whether_a_door_opens():
    """An event's age counted from the decision: an accept decided 15 s after its frame (a slow
    cloud fallback: two attempts of twice the timeout and the settle window) left as a fresh
    accept, which the door itself refused as stale. Its age counts from its frame now. And an
    `accept` is the face's match, which a door may refuse (an attack with liveness `flag`, the
    offline policy's allow, a person this device does not hold): `admits` says whether a door
    opens on it, `why_not` why not."""
    from edge.core.domain import Decision, Mode, Source, TrackLiveness
    from edge.daemon.decide import Outcome
    from edge.daemon.decision_event import decision_event, mark_stale
    from edge.daemon.door_link import strict_accept

    slow = {**sample_event(decision="accept", person_id="alice", admits=True, why_not=None),
            "latency_ms": {"frame_to_event_ms": 15_000.0}}
    compact = {"separators": (",", ":")}  # as the outbox stores it
    sent = json.loads(mark_stale(json.dumps(slow, **compact).encode(), 10.0))
    assert (sent["decision"], sent["reason"], sent["admits"], sent["why_not"]) == (
        "unknown", "stale_accept", False, "stale")
    assert sent["stale_s"] >= 15.0
    fresh = {**slow, "latency_ms": {"frame_to_event_ms": 120.0}}
    assert json.loads(mark_stale(json.dumps(fresh, **compact).encode(), 10.0))["decision"] == "accept"

    flagged = Outcome(Mode.VERIFY, Decision.ACCEPT, Source.LOCAL, "alice", liveness=TrackLiveness(0.001, 5, "attack"))
    event = decision_event(flagged, device="d", camera="c", fingerprints={"pack": "0" * 16}, cache_version="v",
                           admits=strict_accept(flagged, liveness_mode="flag", stale_s=10, decided_s=0.2,
                                                offline_allow_opens=False))
    assert (event["decision"], event["admits"], event["why_not"]) == ("accept", False, "presentation_attack")
    assert schema_errors("p/dev/event", json.dumps(event).encode()) == []
