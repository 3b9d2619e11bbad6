"""`edge-verifier bench log --json`: the cost of access rules and of the access log.

- evaluate_us: rule evaluation per decision (edge.door.access, a site of 24 doors, 48 access
  levels, holidays, anti-passback), p50/p99 over `--evaluations` requests at random times.
- lost: what never arrived of `--decisions` decisions made by the daemon's own door link
  (edge.daemon.door_link: the decision's record in the access log, its door events through the
  durable MQTT outbox) while a real hub process (`edge-verifier hub`) and a real mosquitto were
  each killed with SIGKILL `--kills` times at random moments and started again: log records
  missing at the hub (`lost_records`, the uploader's path) plus door events missing at a
  persistent-session subscriber (`lost_door_events`, the outbox's path); 0 is the goal.
- search_ms: a person + day query (`search_access`) over `--records` stored records, p99 over
  `--queries` queries, on SQLite and on PostgreSQL (a throwaway cluster; skipped with the
  reason when none can start here).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

DAY = 86400.0
T0 = 1_798_761_600.0  # 2027-01-01 00:00 UTC


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON (the default output)")
    parser.add_argument("--evaluations", type=int, default=20000, help="rule evaluations timed")
    parser.add_argument("--decisions", type=int, default=1000, help="records appended while the hub is killed")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the hub, and of the broker, during the run")
    parser.add_argument("--records", type=int, default=1_000_000, help="records stored for the search measure")
    parser.add_argument("--queries", type=int, default=300, help="person + day queries timed per store")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: evaluate,lost,search")


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def site_rules():
    from edge.core.access_rules import parse_rules

    days = ["mon", "tue", "wed", "thu", "fri"]
    doors = [{"id": f"d{i}"} for i in range(24)]
    doors[0].update(modes=[{"schedule": "night", "mode": "locked_down"}], auth=[{"schedule": "weekend",
                                                                                    "auth": "face+claim"}])
    doors[1].update(pair="d2", direction="in")
    doors[2].update(pair="d1", direction="out")
    groups = [f"g{i}" for i in range(16)]
    doc = {
        "timezone": "Europe/Berlin", "groups": groups, "doors": doors,
        "schedules": {"office": [{"days": days, "from": "07:00", "to": "19:00"}],
                      "weekend": [{"days": ["sat", "sun"], "from": "08:00", "to": "14:00"}],
                      "night": [{"days": days + ["sat", "sun"], "from": "23:00", "to": "05:00"}]},
        "access_levels": [{"id": f"l{i}", "groups": [groups[i % 16]], "doors": [f"d{(i + k) % 24}" for k in range(6)],
                           "schedule": "office" if i % 3 else "weekend"} for i in range(48)],
        "holidays": [f"2027-{m:02d}-{d:02d}" for m in range(1, 13) for d in (1, 15)],
        "anti_passback": {"timed_s": 60, "response": "hard"},
        "duress_persons": ["p-duress"],
    }
    return parse_rules(doc, 1)


def measure_evaluate(n: int) -> dict:
    from edge.door.access import AccessPolicy
    from edge.door.interface import AccessRequest

    rules = site_rules()
    policy = AccessPolicy(lambda: rules)
    rng = random.Random(7)
    grants = {(f"p{i}", f"d{i % 24}"): T0 + i for i in range(500)}

    class History:
        def last_grant(self, person_id: str, door: str | None = None) -> float | None:
            return grants.get((person_id, door or ""))

        def last_door(self, person_id: str, doors: tuple[str, ...]) -> str | None:
            seen = [(at, door) for door in doors if (at := grants.get((person_id, door))) is not None]
            return max(seen)[1] if seen else None

    history = History()
    requests = [AccessRequest(f"e{i}", f"d{rng.randrange(24)}", f"p{rng.randrange(1000)}",
                              (f"g{rng.randrange(16)}",), rng.choice(["accept"] * 8 + ["uncertain", "reject"]),
                              "local", True, T0 + rng.uniform(0, 7 * DAY)) for i in range(n)]
    times = []
    for request in requests:
        t = time.perf_counter_ns()
        policy.evaluate(request, history)
        times.append((time.perf_counter_ns() - t) / 1000)
    return {"p50": round(_pct(times, 0.5), 1), "p99": round(_pct(times, 0.99), 1), "n": n}


class DoorEventFeed:
    """A site's consumer of the door events: a persistent MQTT session (QoS 1, its queue kept by
    the broker while it is away), counting distinct event_ids (QoS 1 may deliver twice)."""

    def __init__(self, port: int, topic: str):
        import paho.mqtt.client as mqtt

        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-door-feed-{time.time_ns()}",
                                  clean_session=False)
        self.client.reconnect_delay_set(0.2, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            event_id = json.loads(msg.payload).get("event_id")
        except (ValueError, AttributeError):
            return
        with self.lock:
            self.seen.add(event_id)

    def count(self) -> int:
        with self.lock:
            return len(self.seen)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _door_link(workdir: Path, broker_port: int, log):
    """The daemon's door link (backend none), publishing through a real outbox and MQTT."""
    import numpy as np

    from edge.core.matcher import Enrolled, Gallery
    from edge.daemon.config import EdgeSettings
    from edge.daemon.door_link import DoorLink
    from edge.daemon.mqtt import MqttPublisher
    from edge.daemon.outbox import Outbox

    s = EdgeSettings(storage={"path": workdir}, identify={"groups": ["staff"]},
                     mqtt={"host": "127.0.0.1", "port": broker_port, "prefix": "bench", "keepalive": 5,
                           "reconnect_max_s": 1},
                     door={"backend": "none", "name": "front", "unlock_s": 1})
    events = MqttPublisher(s.mqtt, "bench-door", Outbox(workdir / "outbox.db"), door="front")
    vector = np.ones(128, dtype=np.float32)
    gallery = Gallery([Enrolled(f"p{i}", str(i), vector, ("staff",)) for i in range(50)])
    return DoorLink.from_settings(s, events, lambda: gallery, access_log=log), events


def measure_lost(decisions: int, kills: int, workdir: Path) -> dict:
    """`decisions` decisions through the door link at a steady pace while the hub and the broker
    are each SIGKILLed `kills` times at random moments."""
    from edge.core.domain import Decision, Mode, Source, TrackLiveness
    from edge.daemon.decide import Outcome
    from edge.dev.devstack import Broker, HubProc
    from edge.door.access_log import AccessLog
    from edge.door.access_upload import Uploader

    hub = HubProc(workdir / "hub").start(timeout=120)
    (workdir / "broker").mkdir()
    broker = Broker(workdir / "broker", persistence=True)
    # a broker killed loses what it has not saved: save at once, as a site's broker should be
    broker.conf.write_text(broker.conf.read_text() + "autosave_interval 1\nautosave_on_changes true\n")
    broker.start()
    feed = DoorEventFeed(broker.port, "bench/bench-door/door/front/event")
    client = hub.client(timeout=5.0, retries=0)
    log = AccessLog(workdir / "edge-log.db", b"bench-edge-key")
    link, events = _door_link(workdir, broker.port, log)
    events.start()
    link.start()
    uploader = Uploader(client, log, "bench-edge", batch=50, interval_s=0.2)
    link.uploader = uploader
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), daemon=True)
    thread.start()
    rng = random.Random(11)
    kill_at = sorted(rng.sample(range(decisions // 10, decisions), 2 * kills))
    kill_what = dict(zip(kill_at, rng.sample(["hub"] * kills + ["broker"] * kills, 2 * kills)))
    t0 = time.monotonic()
    try:
        for i in range(decisions):
            out = Outcome(Mode.IDENTIFY, Decision.ACCEPT, Source.LOCAL, f"p{i % 50}", score=0.7,
                          liveness=TrackLiveness(0.9, 5, "live"))
            link.decided(out, {"event_id": f"bench-{i}"}, 0.01)
            link.tick()
            what = kill_what.get(i)
            proc = hub.proc if what == "hub" else broker.proc if what == "broker" else None
            if proc is not None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                hub.start(timeout=120) if what == "hub" else broker.start()
            time.sleep(0.005)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (log.uploaded < int((log.head().get("head") or {}).get("seq", 0))
                                               or feed.count() < link.published):
            uploader.trigger()
            link.tick()
            time.sleep(0.2)
    finally:
        stop.set()
        uploader.trigger()
        thread.join(10)
    head = int((log.head().get("head") or {}).get("seq", 0))
    stored = 0
    after = None
    while True:
        page = client.searchlog(edge_id="bench-edge", limit=1000, **({"after": after} if after else {}))
        stored += len(page["records"])
        after = page["next"]
        if not after:
            break
    published, received = link.published, feed.count()
    link.close()
    events.stop()
    feed.close()
    client.close()
    hub.stop()
    broker.stop()
    report = log.verify()
    log.close()
    return {"lost": (head - stored) + (published - received), "lost_records": head - stored,
            "lost_door_events": published - received, "decisions": decisions, "records": head,
            "stored": stored, "door_events": published, "received": received,
            "hub_kills": kills, "broker_kills": kills, "edge_chain_ok": report.ok,
            "seconds": round(time.monotonic() - t0, 1),
            "uploader": {k: uploader.state[k] for k in ("refused", "sent")}}


def fill(store, n: int, persons: int, days: int) -> None:
    """`n` records of one edge, written straight into the store's table (a valid chain is not
    what is measured here, and storing through the chain check would take as long as the test)."""
    from edge.core.access_chain import canonical

    rng = random.Random(5)
    batch = []
    with store._write("bench") as c:
        for seq in range(1, n + 1):
            at = T0 + rng.uniform(0, days * DAY)
            record = {"seq": seq, "record_id": f"r{seq}", "at": at, "kind": "decision", "door": f"d{seq % 24}",
                      "person_id": f"p{rng.randrange(persons)}", "decision": "accept", "outcome": "grant",
                      "reason": "granted", "event_id": f"e{seq}", "score": 0.7, "prev": "0" * 64, "hash": "0" * 64}
            batch.append(("bench", "edge", seq, record["record_id"], at, "decision", record["door"],
                          record["person_id"], "accept", "grant", "granted", record["hash"], canonical(record), at))
            if len(batch) == 10000 or seq == n:
                store._executemany(c, "INSERT INTO access_records (appid, edge_id, seq, record_id, at, kind, door,"
                                      " person_id, decision, outcome, reason, hash, body, received)"
                                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
                batch = []


def measure_search(store, records: int, queries: int) -> dict:
    persons, days = 2000, 365
    t0 = time.monotonic()
    fill(store, records, persons, days)
    filled_s = time.monotonic() - t0
    rng = random.Random(3)
    times, hits = [], 0
    for _ in range(queries):
        day = T0 + rng.randrange(days) * DAY
        t = time.perf_counter()
        found, _ = store.search_access("bench", {"person_id": f"p{rng.randrange(persons)}"}, day, day + DAY,
                                       limit=100)
        times.append((time.perf_counter() - t) * 1000)
        hits += len(found)
    return {"p50": round(_pct(times, 0.5), 2), "p99": round(_pct(times, 0.99), 2), "records": records,
            "queries": queries, "mean_hits": round(hits / queries, 2), "fill_s": round(filled_s, 1)}


def run(args: argparse.Namespace) -> int:
    skip = set(filter(None, args.skip.split(",")))
    out: dict = {}
    if "evaluate" not in skip:
        out["evaluate_us"] = measure_evaluate(args.evaluations)
    with tempfile.TemporaryDirectory(prefix="bench-log-") as tmp:
        if "lost" not in skip:
            out.update(measure_lost(args.decisions, args.kills, Path(tmp)))
        if "search" not in skip:
            from edge.hub.store import SqliteStore

            out["search_ms"] = {}
            store = SqliteStore(Path(tmp) / "search.sqlite3", synchronous="NORMAL")
            try:
                out["search_ms"]["sqlite"] = measure_search(store, args.records, args.queries)
            finally:
                store.close()
            try:
                from edge.dev.pgcluster import ClusterUnavailable, throwaway_cluster
                from edge.hub.store.postgres import PostgresStore

                with throwaway_cluster(Path(tmp) / "pg") as url:
                    pg = PostgresStore(url, pool_size=2)
                    try:
                        out["search_ms"]["postgresql"] = measure_search(pg, args.records, args.queries)
                    finally:
                        pg.close()
            except (ImportError, ClusterUnavailable) as exc:
                out["search_ms"]["postgresql"] = {"skipped": str(exc)}
    out["machine"] = {"cpus": __import__("os").cpu_count(), "python": sys.version.split()[0]}
    print(json.dumps(out))
    return 0
