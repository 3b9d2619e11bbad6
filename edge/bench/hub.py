"""`edge-verifier bench hub --json`: verify throughput and latency of a hub on loopback.

Starts a hub in this process (uvicorn thread, temp SQLite store, the built models), enrols a few
real faces from five_celebrity, then runs `--concurrency` signed verify clients for `--seconds`
and prints {"requests", "rps", "p50_ms", "p99_ms", "errors", "concurrency", ...} on stdout.
Run it with `nice` on a shared machine: the server and the clients share the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

from edge.dev.localenv import free_port, shared_faces_dir

PEOPLE = ("Ben_Afflek", "Elton_John", "Madonna")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON (the default output)")
    parser.add_argument("--concurrency", type=int, default=4, help="concurrent verify clients")
    parser.add_argument("--seconds", type=float, default=10.0, help="how long the clients run")
    parser.add_argument("--precision", default="int8", choices=["int8", "fp32"], help="hub embedder pack")
    parser.add_argument("--threads", type=int, default=1,
                        help="inference threads per model, as [vision] threads (0: onnxruntime default)")
    parser.add_argument("--models-dir", default="", help="built models (default: the package's models/)")
    parser.add_argument("--faces", type=Path, default=shared_faces_dir(),
                        help="photo folder holding five_celebrity/ (default ../shared/faces)")
    scale = parser.add_argument_group("scale (edge.bench.hub_scale): hub processes over a shared store")
    scale.add_argument("--processes", default="", help="comma-separated process counts on PostgreSQL, e.g. 1,2,4")
    scale.add_argument("--store", default="", help="stores to compare: sqlite,postgresql (SQLite runs 1 process)")
    scale.add_argument("--gallery", type=int, default=0, help="also identify against this many faces in one group")
    scale.add_argument("--enrol", type=int, default=0, help="also measure the enrolment rate with this many people")
    scale.add_argument("--pg-url", default="", help="PostgreSQL to use (default: a throwaway cluster)")


def _faces_root(faces: Path) -> Path:
    root = faces / "five_celebrity"
    if not root.is_dir():
        raise SystemExit(f"bench hub: photos not found at {root} (pass --faces or set EDGE_VERIFIER_SHARED)")
    return root


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


def run(args) -> int:
    import uvicorn

    from edge.api.client import CloudClient, CloudError
    from edge.hub.config import HubSettings
    from edge.hub.face_crops import add_key
    from edge.hub.server import build_app

    root = _faces_root(args.faces)
    if args.processes or args.store:
        from edge.bench.hub_scale import run_scale

        args.processes = args.processes or "1"
        args.store = args.store or "postgresql"
        return run_scale(args, root)
    port, key = free_port(), secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmp:
        add_key(Path(tmp) / "hub-secrets.toml")  # enrolment keeps sealed crops, as a real hub does
        settings = HubSettings(
            secrets_file=f"{tmp}/hub-secrets.toml",
            server={"host": "127.0.0.1", "port": port}, storage={"path": f"{tmp}/hub.sqlite3"},
            credentials=[{"appid": "1", "secret_id": "AKIDbench", "secret_key": key}],
            limits={"rate_per_s": 0}, vision={"models_dir": args.models_dir, "precision": args.precision,
                                                "threads": args.threads},
        )
        app, store = build_app(settings)
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                               access_log=False, lifespan="off"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}"
        try:
            print(f"bench hub: enrolling {len(PEOPLE)} people on {url}", file=sys.stderr)
            probes: list[tuple[str, bytes]] = []
            with CloudClient(url, "1", "AKIDbench", key, timeout=60) as admin:
                for name in PEOPLE:
                    admin.newperson(name, ["bench"], (root / name / "train_1.jpg").read_bytes())
                    admin.addface(name, [(root / name / f"train_{i}.jpg").read_bytes() for i in (2, 3)])
                    probes += [(name, p.read_bytes()) for p in sorted((root / name).glob("val_*.jpg"))]
                admin.verify(PEOPLE[0], probes[0][1])  # warm-up
            latencies: list[float] = []
            errors = 0
            lock = threading.Lock()
            deadline = time.monotonic() + args.seconds

            def worker(index: int) -> None:
                nonlocal errors
                with CloudClient(url, "1", "AKIDbench", key, timeout=30, retries=0) as client:
                    i = index
                    while time.monotonic() < deadline:
                        name, photo = probes[i % len(probes)]
                        i += 1
                        t0 = time.perf_counter()
                        try:
                            client.verify(name, photo)
                            ok = True
                        except CloudError:
                            ok = False
                        dt = (time.perf_counter() - t0) * 1000
                        with lock:
                            if ok:
                                latencies.append(dt)
                            else:
                                errors += 1

            print(f"bench hub: {args.concurrency} clients for {args.seconds:g} s", file=sys.stderr)
            t_start = time.monotonic()
            workers = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            elapsed = time.monotonic() - t_start
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            store.close()
    latencies.sort()
    result = {
        "requests": len(latencies) + errors,
        "rps": round(len(latencies) / elapsed, 2) if elapsed > 0 else 0.0,
        "p50_ms": round(_percentile(latencies, 0.50), 2),
        "p99_ms": round(_percentile(latencies, 0.99), 2),
        "errors": errors,
        "concurrency": args.concurrency,
        "seconds": round(elapsed, 2),
        "precision": args.precision,
        "threads": args.threads,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result))
    return 0
