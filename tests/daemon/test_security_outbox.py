"""Issue 14 item 9: behind a large outbox backlog (an outage's worth of events), a live decision
goes out first instead of after the whole backlog; the outbox has a size cap whose overflow
drops the oldest events, counted. Real daemon / publisher, real mosquitto, real SQLite."""

from __future__ import annotations

import json
import time

from edge.daemon.config import MqttSettings
from edge.daemon.mqtt import MqttPublisher
from edge.daemon.outbox import Outbox
from tests.conftest import free_port
from tests.support.broker import Broker, DaemonProc, Subscriber, edge_command, sample_event, write_edge_config

BACKLOG = 20_000


class NoHub:  # a [hub] nobody answers at; the local API and commands take EDGE_API, not its key
    url, appid, secret_id, secret_key = f"http://127.0.0.1:{free_port()}", "1000001", "AKIDlane", "l" * 32


def _prefill(path, topic: str, n: int) -> None:
    """An outage's backlog, as an earlier run of the daemon left it."""
    box = Outbox(path)
    rows = []
    for i in range(n):
        e = sample_event(claim={"person_id": "backlog", "request_id": str(i)})
        rows.append((e["event_id"], topic, json.dumps(e, separators=(",", ":")).encode()))
    box._db.execute("BEGIN")
    box._db.executemany("INSERT INTO outbox (event_id, topic, payload) VALUES (?,?,?)", rows)
    box._db.execute("COMMIT")
    box.close()


def test_a_live_decision_overtakes_a_large_backlog_which_still_arrives_whole(models_dir, tmp_path):
    data = tmp_path / "data"
    _prefill(data / "outbox.db", "test/door-lane/event", BACKLOG)
    mosquitto = Broker(tmp_path)
    # the test's subscriber must not be what drops messages (mosquitto queues 1,000 by default)
    mosquitto.conf.write_text(mosquitto.conf.read_text() + "max_queued_messages 0\n")
    mosquitto.start()
    sub = Subscriber(mosquitto, "test/door-lane/event")
    port = free_port()
    cfg = write_edge_config(tmp_path / "edge.toml", device="door-lane", camera=f"files:{tmp_path}/none/*",
                            broker=mosquitto, hub=NoHub, storage=data, api_port=port)
    daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
    try:
        daemon.wait_health(lambda h: h["mqtt"]["connected"], 60)
        claim = edge_command("verify", person_id="alice", timeout_s=0.5)
        import paho.mqtt.client as mqtt

        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.connect(mosquitto.host, mosquitto.port)
        pub.publish("test/door-lane/cmd/verify", json.dumps(claim), qos=1).wait_for_publish(5)
        pub.disconnect()

        assert sub.wait_for(lambda: len(sub.messages) >= BACKLOG + 1, 120), len(sub.messages)
        daemon.wait_health(lambda h: h["mqtt"]["outbox_depth"] == 0, 30)
    finally:
        assert daemon.terminate() == 0
        sub.close()
        mosquitto.stop()
    events = sub.json()
    index = next(i for i, e in enumerate(events) if e["claim"]["person_id"] == "alice")
    backlog = [int(e["claim"]["request_id"]) for e in events if e["claim"]["person_id"] == "backlog"]
    assert sorted(set(backlog)) == list(range(BACKLOG))  # nothing lost
    assert backlog == sorted(backlog)  # the backlog itself still in order
    assert index < BACKLOG // 2, f"the live decision came after {index} backlog events"


def test_a_full_outbox_drops_its_oldest_events_counts_them_and_sends_the_newest(mosquitto, subscribe, tmp_path):
    sub = subscribe("cap/door-cap/event")
    box = Outbox(tmp_path / "outbox.db", max_rows=100)
    pub = MqttPublisher(MqttSettings(host=mosquitto.host, port=mosquitto.port, prefix="cap"), "door-cap", box)
    for i in range(150):  # decided while the broker could not be reached
        pub.publish_event(sample_event(claim={"person_id": "cap", "request_id": str(i)}))
    assert (box.depth(), pub.outbox_health()["dropped"]) == (100, 50)
    assert box.depth() == box._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    pub.start()
    try:
        assert sub.wait_for(lambda: len(sub.json()) >= 100, 30)
        time.sleep(0.5)
    finally:
        pub.stop()
    assert [int(e["claim"]["request_id"]) for e in sub.json()] == list(range(50, 150))
    reopened = Outbox(tmp_path / "outbox.db", max_rows=100)
    assert reopened.depth() == 0
