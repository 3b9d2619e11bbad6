"""`edge-verifier bench log --json`: the cost of access rules and of the access log.

- evaluate_us: rule evaluation per decision (edge.door.access, a site of 24 doors, 48 access
  levels, holidays, anti-passback), p50/p99 over `--evaluations` requests at random times.
- lost: records missing at the hub after `--decisions` records were appended on an edge while
  its uploader ran against a real hub process (`edge-verifier hub`) killed with SIGKILL
  `--kills` times at random moments and started again; 0 is the goal. The broker plays no
  part in this path (the log does not pass through MQTT), so it is not killed here.
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
    parser.add_argument("--kills", type=int, default=3, help="SIGKILLs of the hub during the upload run")
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


def measure_lost(decisions: int, kills: int, workdir: Path) -> dict:
    """Append `decisions` records at a steady pace while the hub is SIGKILLed `kills` times."""
    from edge.dev.devstack import HubProc
    from edge.door.access_log import AccessLog
    from edge.door.access_upload import Uploader

    hub = HubProc(workdir / "hub").start(timeout=120)
    client = hub.client(timeout=5.0, retries=0)
    log = AccessLog(workdir / "edge-log.db", b"bench-edge-key")
    uploader = Uploader(client, log, "bench-edge", batch=50, interval_s=0.2)
    stop = threading.Event()
    thread = threading.Thread(target=uploader.run, args=(stop,), daemon=True)
    thread.start()
    rng = random.Random(11)
    kill_at = sorted(rng.sample(range(decisions // 10, decisions), kills))
    t0 = time.monotonic()
    try:
        for i in range(decisions):
            log.append("decision", door="front", person_id=f"p{i % 50}", decision="accept", outcome="grant",
                       reason="granted", event_id=f"bench-{i}", score=0.7)
            if kill_at and i == kill_at[0]:
                kill_at.pop(0)
                assert hub.proc is not None
                hub.proc.send_signal(signal.SIGKILL)
                hub.proc.wait(10)
                hub.start(timeout=120)
            time.sleep(0.005)
        deadline = time.monotonic() + 120
        while log.uploaded < decisions and time.monotonic() < deadline:
            uploader.trigger()
            time.sleep(0.2)
    finally:
        stop.set()
        uploader.trigger()
        thread.join(10)
    stored = 0
    after = None
    while True:
        page = client.searchlog(edge_id="bench-edge", limit=1000, **({"after": after} if after else {}))
        stored += len(page["records"])
        after = page["next"]
        if not after:
            break
    client.close()
    hub.stop()
    report = log.verify()
    log.close()
    return {"lost": decisions - stored, "decisions": decisions, "hub_kills": kills, "stored": stored,
            "edge_chain_ok": report.ok, "seconds": round(time.monotonic() - t0, 1),
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
                          record["person_id"], "accept", "grant", "granted", record["hash"], canonical(record)))
            if len(batch) == 10000 or seq == n:
                store._executemany(c, "INSERT INTO access_records (appid, edge_id, seq, record_id, at, kind, door,"
                                      " person_id, decision, outcome, reason, hash, body)"
                                      " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", batch)
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
