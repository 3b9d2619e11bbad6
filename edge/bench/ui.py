"""`edge-verifier bench ui --json`: how fast the web console's pages answer with many persons.

Fills a temp SQLite store with `--persons` persons (one face each, random embeddings: the pages
read no model), serves a hub in this process on loopback (uvicorn thread), logs in as an admin
and fetches each page `--rounds` times, one request at a time: the first and the last page of
persons, a search, a person's page, the groups, the decisions (2,000 of them from a real access log:
newest, one person's, a day's denials) and the doors (three edges' reports, a person's reach).
Prints {"persons": N, "page_ms": {"p50", "p95", "max"}, "pages": {name: {"p50", "p95"}}} on stdout.
Run it with `nice` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import tempfile
import threading
import time

from edge.dev.localenv import free_port


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON (the default output)")
    parser.add_argument("--persons", type=int, default=10000, help="persons in the store")
    parser.add_argument("--rounds", type=int, default=40, help="requests per page")


def _percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))] if values else 0.0


def fill(path: str, persons: int) -> None:
    import numpy as np

    from edge.hub.store import FaceRecord, Limits, SqliteStore

    store = SqliteStore(path, synchronous="OFF")  # a throwaway file: no fsync per person
    rng = np.random.default_rng(0)
    limits = Limits(persons_per_group=max(20000, persons))
    try:
        for i in range(persons):
            vec = rng.standard_normal(128).astype(np.float32)
            face = FaceRecord(store.new_face_id(), f"p{i:06d}", (10, 10, 90, 90), [[1.0, 2.0]] * 5, quality=0.9,
                              embeddings={"bench": vec / np.linalg.norm(vec)})
            store.create_person("1", f"p{i:06d}", [f"group{i % 4}"], f"Person {i}", "", face, limits)
        fill_doors(store, persons, f"{path}.access-log")
    finally:
        store.close()


def fill_doors(store, persons: int, log_path: str, decisions: int = 2000) -> None:
    """`decisions` door decisions of the persons over the last days from a real edge access log
    (hash-chained, stored as an upload is), and three edges' sync reports."""
    import time

    from edge.door.access_log import AccessLog
    from edge.hub.store.edges import EdgeReport

    start = time.time() - 7 * 86400
    clock = iter(start + i * (7 * 86400 / decisions) for i in range(decisions))
    log = AccessLog(log_path, secrets.token_bytes(32), clock=lambda: next(clock))
    records = [log.append("decision", door=f"door{i % 3}", person_id=f"p{i * 7 % persons:06d}",
                          decision="accept" if i % 5 else "reject", outcome="grant" if i % 5 else "deny",
                          reason="granted" if i % 5 else "not_recognised", score=0.7 if i % 5 else 0.2,
                          liveness="live") for i in range(decisions)]
    for at in range(0, len(records), 1000):
        store.store_access_records("1", "edge-bench", records[at:at + 1000])
    for n in range(3):
        store.record_edge("1", EdgeReport(f"edge-{n}", time.time(), n, "bench", "on", "locked, mode normal", "ok"))


def run(args) -> int:
    import httpx
    import uvicorn

    from edge.hub.config import HubSettings
    from edge.hub.server import build_app
    from edge.hub.ui import accounts

    port, password = free_port(), secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        print(f"bench ui: filling a store with {args.persons} persons", file=sys.stderr)
        fill(f"{tmp}/hub.sqlite3", args.persons)
        key = secrets.token_hex(16)
        settings = HubSettings(server={"host": "127.0.0.1", "port": port},
                               storage={"path": f"{tmp}/hub.sqlite3", "keep_face_crops": False},
                               credentials=[{"appid": "1", "secret_id": "AKIDbench", "secret_key": key}])
        app, store = build_app(settings)
        accounts.add(store, "bench", "1", "admin", password)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               access_log=False, lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        base = f"http://127.0.0.1:{port}"
        pages = {"persons": "/ui/persons", "persons_last": f"/ui/persons?page={-(-args.persons // 50)}",
                 "search": "/ui/persons?q=person%2012", "person": f"/ui/persons/p{args.persons // 2:06d}",
                 "groups": "/ui/groups", "decisions": "/ui/decisions",
                 "decisions_person": f"/ui/decisions?person=p{args.persons // 2:06d}",
                 "decisions_day": "/ui/decisions?outcome=deny&since=" + time.strftime("%Y-%m-%d"),
                 "doors": "/ui/doors", "doors_person": f"/ui/doors?person=p{args.persons // 2:06d}"}
        times: dict[str, list[float]] = {name: [] for name in pages}
        try:
            with httpx.Client(base_url=base, timeout=30, headers={"Origin": base, "Sec-Fetch-Site": "same-origin"}
                              ) as http:
                form = http.get("/ui/login").text
                token = re.search(r'name="login_token" value="([^"]+)"', form)[1]
                answer = http.post("/ui/login", data={"username": "bench", "password": password, "login_token": token})
                if answer.status_code != 303:
                    raise SystemExit(f"bench ui: login failed ({answer.status_code})")
                for _ in range(args.rounds):
                    for name, path in pages.items():
                        t0 = time.perf_counter()
                        got = http.get(path)
                        times[name].append((time.perf_counter() - t0) * 1000)
                        if got.status_code != 200:
                            raise SystemExit(f"bench ui: {path} answered {got.status_code}")
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            store.close()
    every = [t for values in times.values() for t in values]
    result = {"persons": args.persons, "rounds": args.rounds,
              "page_ms": {"p50": round(_percentile(every, 0.5), 2), "p95": round(_percentile(every, 0.95), 2),
                          "max": round(max(every), 2)},
              "pages": {name: {"p50": round(_percentile(v, 0.5), 2), "p95": round(_percentile(v, 0.95), 2)}
                        for name, v in times.items()}}
    print(json.dumps(result))
    return 0
