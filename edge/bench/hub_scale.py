"""`edge-verifier bench hub --processes 1,2,4 --store sqlite,postgresql --json`: the hub at scale.

In one run, each hub a real `edge-verifier hub --workers N` process tree on loopback:
- verify and identify requests/s with p50/p99 for 1 process on SQLite and N processes on
  PostgreSQL for each N of --processes (clients open a connection per request, so the kernel
  spreads them over the workers; clients and hubs share this machine's CPUs);
- identify against one group of --gallery faces (--gallery-persons persons) on PostgreSQL, one
  process: p50/p99, the hub's RSS, and the matching time alone (`Gallery.identify` over the same
  faces in this process). The gallery is synthetic unit vectors written straight into the
  database beside three real people: the matching cost does not depend on the values, and
  enrolling 100,000 photos through the API would take hours on this machine;
- the enrolment rate (newperson + addface with LFW photos through the API) on PostgreSQL with
  the largest process count, with progress.
PostgreSQL is a throwaway cluster (edge.dev.pgcluster: initdb + pg_ctl) unless --pg-url is given.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from edge.dev.localenv import free_port

APPID, SECRET_ID = "1", "AKIDbench"
PEOPLE = ("Ben_Afflek", "Elton_John", "Madonna")



def _run_workers(worker, concurrency: int) -> float:
    """Run worker(0..concurrency-1) in threads until all return; the seconds it took."""
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - t0

def _progress(msg: str) -> None:
    print(f"[bench hub] {msg}", file=sys.stderr, flush=True)


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))]


def _rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn's workers), in MB."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return round(total / 1024, 1)


@contextmanager
def hub_process(tmp: Path, key: str, *, store_url: str, workers: int, models_dir: str, precision: str,
                threads: int) -> Iterator[tuple[str, subprocess.Popen]]:
    """`edge-verifier hub --workers N` on a free port until the block exits; yields (url, process)."""
    from edge.dev.devstack import wait_healthy
    from edge.hub.face_crops import add_key

    port = free_port()
    cfg = tmp / f"hub-{port}.toml"
    secrets_file = tmp / "hub-secrets.toml"  # enrolment keeps sealed crops, as a real hub does
    add_key(secrets_file)  # once: a second call keeps the key
    cfg.write_text("\n".join([
        f"secrets_file = {json.dumps(str(secrets_file))}",
        "[server]", 'host = "127.0.0.1"', f"port = {port}",
        "[storage]", f"path = {json.dumps(str(tmp / f'hub-{port}.sqlite3'))}", f"url = {json.dumps(store_url)}",
        "[limits]", "rate_per_s = 0",
        "[vision]", f"models_dir = {json.dumps(models_dir)}", f"precision = {json.dumps(precision)}",
        f"threads = {threads}",
        "[[credentials]]", f'appid = "{APPID}"', f'secret_id = "{SECRET_ID}"', f'secret_key = "{key}"',
    ]) + "\n")
    cfg.chmod(0o600)  # it holds the key: the hub refuses a readable one
    log = tmp / f"hub-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "hub", "--config", str(cfg), "--workers", str(workers),
                                 "--log-level", "warning"], stdout=out, stderr=subprocess.STDOUT)
    try:
        if not wait_healthy(port, proc, timeout=120):
            raise SystemExit(f"bench hub: the hub did not start:\n{log.read_text(errors='replace')[-2000:]}")
        yield f"http://127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def load(url: str, key: str, request: Callable, concurrency: int, seconds: float) -> dict:
    """`concurrency` clients calling `request(client, i)` for `seconds`: rps and p50/p99 in ms."""
    from edge.api.client import CloudClient, CloudError

    latencies: list[float] = []
    errors = 0
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        nonlocal errors
        with CloudClient(url, APPID, SECRET_ID, key, timeout=60, retries=0, keepalive=False) as client:
            i = index
            while True:  # at least one request each, however late the thread starts
                t0 = time.perf_counter()
                try:
                    request(client, i)
                    ok = True
                except CloudError:
                    ok = False
                dt = (time.perf_counter() - t0) * 1000
                i += concurrency
                with lock:
                    if ok:
                        latencies.append(dt)
                    else:
                        errors += 1
                if time.monotonic() >= deadline:
                    break

    elapsed = _run_workers(worker, concurrency)
    latencies.sort()
    return {"requests": len(latencies) + errors, "rps": round(len(latencies) / elapsed, 2),
            "p50_ms": round(_percentile(latencies, 0.5), 2), "p99_ms": round(_percentile(latencies, 0.99), 2),
            "errors": errors}


def enrol_people(client, root: Path) -> list[tuple[str, bytes]]:
    """The three bench people in group `bench` (three photos each); returns (name, probe) pairs."""
    probes = []
    for name in PEOPLE:
        client.newperson(name, ["bench"], (root / name / "train_1.jpg").read_bytes())
        client.addface(name, [(root / name / f"train_{i}.jpg").read_bytes() for i in (2, 3)])
        probes += [(name, p.read_bytes()) for p in sorted((root / name).glob("val_*.jpg"))]
    return probes


def warm_up(url: str, key: str, probes, workers: int) -> None:
    """Enough concurrent calls that every worker process has loaded its models."""
    load(url, key, lambda c, i: c.verify(*probes[i % len(probes)]), max(2, 2 * workers), 2.0 + 2.0 * workers)


def fill_gallery(store_url: str, fingerprint: str, dim: int, persons: int, per_person: int, group: str) -> None:
    """`persons` x `per_person` random unit vectors in `group`, copied straight into the tables."""
    import psycopg

    rng = np.random.default_rng(0)
    now = time.time()
    with psycopg.connect(store_url) as conn, conn.transaction():
        conn.execute("INSERT INTO groups (appid, group_id, created) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                     (APPID, group, now))
        cur = conn.cursor()
        with cur.copy("COPY persons (appid, person_id, person_name, tag, created) FROM STDIN") as copy:
            for p in range(persons):
                copy.write_row((APPID, f"synthetic-{p}", "", "", now))
        with cur.copy("COPY person_groups (appid, person_id, group_id) FROM STDIN") as copy:
            for p in range(persons):
                copy.write_row((APPID, f"synthetic-{p}", group))
        with cur.copy("COPY faces (face_id, appid, person_id, x, y, width, height, landmarks, yaw, pitch, roll,"
                      " quality, sharpness, tag, created) FROM STDIN") as copy:
            for p in range(persons):
                for k in range(per_person):
                    copy.write_row((f"s{p}-{k}", APPID, f"synthetic-{p}", 0, 0, 100, 100, "[]", 0, 0, 0, 0.9, 0, "",
                                    now))
        with cur.copy("COPY embeddings (face_id, fingerprint, vector) FROM STDIN") as copy:
            for p in range(persons):
                vecs = rng.normal(size=(per_person, dim)).astype("<f4")
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                for k in range(per_person):
                    copy.write_row((f"s{p}-{k}", fingerprint, vecs[k].tobytes()))
                if (p + 1) % 5000 == 0:
                    _progress(f"gallery: {(p + 1) * per_person} faces written")


def matching_ms(store_url: str, fingerprint: str, probes: int = 300) -> dict:
    """Gallery.identify alone over the appid's faces (as the hub builds it): p50/p99 in ms."""
    from edge.core.matcher import Gallery
    from edge.hub.store.postgres import PostgresStore

    store = PostgresStore(store_url)
    rows = store.embeddings(APPID, fingerprint)
    store.close()
    gallery = Gallery(rows)
    rng = np.random.default_rng(1)
    dim = gallery.faces[0].embedding.shape[0]
    times = []
    for _ in range(probes):
        probe = rng.normal(size=dim).astype(np.float32)
        t0 = time.perf_counter()
        gallery.identify(probe, ["bench"], top_k=5)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"faces": len(gallery), "p50_ms": round(_percentile(times, 0.5), 2),
            "p99_ms": round(_percentile(times, 0.99), 2)}


def lfw_people(faces: Path, count: int) -> list[tuple[str, list[Path]]]:
    """LFW people with at least two photos (lfw/<Name>/*.jpg), the first two of each."""
    people = []
    for folder in sorted((faces / "lfw").iterdir()):
        photos = sorted(folder.glob("*.jpg")) if folder.is_dir() else []
        if len(photos) >= 2:
            people.append((folder.name, photos[:2]))
        if len(people) >= count:
            break
    return people


def enrolment_rate(url: str, key: str, faces: Path, count: int, concurrency: int) -> dict:
    """newperson + addface for `count` LFW people through the API; persons and faces per second."""
    from edge.api.client import CloudClient, CloudError

    people = lfw_people(faces, count)
    done = failed = 0
    lock = threading.Lock()

    def worker(index: int) -> None:
        nonlocal done, failed
        with CloudClient(url, APPID, SECRET_ID, key, timeout=60, retries=0, keepalive=False) as client:
            for name, photos in people[index::concurrency]:
                try:
                    client.newperson(f"lfw-{name}", ["enrol"], photos[0].read_bytes())
                    client.addface(f"lfw-{name}", [photos[1].read_bytes()])
                    ok = True
                except CloudError:  # an LFW photo without a usable face: counted, not fatal
                    ok = False
                with lock:
                    done += ok
                    failed += not ok
                    if (done + failed) % 25 == 0:
                        _progress(f"enrolment: {done + failed}/{len(people)}")

    elapsed = _run_workers(worker, concurrency)
    return {"persons": done, "failed": failed, "faces": 2 * done, "seconds": round(elapsed, 1),
            "persons_per_s": round(done / elapsed, 2), "faces_per_s": round(2 * done / elapsed, 2)}


def run_scale(args, root: Path) -> int:
    from edge.dev.pgcluster import ClusterUnavailable, throwaway_cluster

    processes = [int(p) for p in args.processes.split(",")]
    stores = args.store.split(",")
    key = secrets.token_hex(16)
    hub = dict(models_dir=args.models_dir, precision=args.precision, threads=args.threads)
    result: dict = {"concurrency": args.concurrency, "seconds": args.seconds, "precision": args.precision,
                    "threads": args.threads, "cpus": os.cpu_count(), "runs": []}
    try:
        cluster = nullcontext(args.pg_url) if args.pg_url or "postgresql" not in stores else throwaway_cluster()
        with tempfile.TemporaryDirectory(prefix="bench-hub-") as tmpdir, cluster as pg:
            tmp = Path(tmpdir)
            configs = [("sqlite", 1)] if "sqlite" in stores else []
            configs += [("postgresql", n) for n in processes] if "postgresql" in stores else []
            for store, n in configs:
                url = _new_database(pg) if store == "postgresql" else ""
                with hub_process(tmp, key, store_url=url, workers=n, **hub) as (base, proc):
                    probes = _enrol(base, key, root)
                    warm_up(base, key, probes, n)
                    _progress(f"{store} x{n}: verify, {args.concurrency} clients, {args.seconds:g} s")
                    verify = load(base, key, lambda c, i, probes=probes: c.verify(*probes[i % len(probes)]),
                                  args.concurrency, args.seconds)
                    _progress(f"{store} x{n}: identify")
                    identify = load(base, key,
                                    lambda c, i, probes=probes: c.identify(probes[i % len(probes)][1], ["bench"]),
                                    args.concurrency, args.seconds)
                    result["runs"].append({"store": store, "processes": n, "verify": verify, "identify": identify,
                                           "rss_mb": _rss_mb(proc.pid)})
                    _progress(json.dumps(result["runs"][-1]))
            if args.gallery and pg:
                result["gallery"] = _gallery_run(args, tmp, key, pg, hub, root)
            if args.enrol and pg:
                n = max(processes)
                with hub_process(tmp, key, store_url=_new_database(pg), workers=n, **hub) as (base, _proc):
                    probes = _enrol(base, key, root)
                    warm_up(base, key, probes, n)
                    _progress(f"enrolment: {args.enrol} LFW people through {n} processes")
                    result["enrolment"] = {"processes": n, **enrolment_rate(base, key, args.faces, args.enrol,
                                                                              args.concurrency)}
    except ClusterUnavailable as exc:
        raise SystemExit(f"bench hub: no PostgreSQL ({exc}); pass --pg-url or --store sqlite") from None
    print(json.dumps(result))
    return 0


def _gallery_run(args, tmp: Path, key: str, pg: str, hub: dict, root: Path) -> dict:
    per_person = 5
    persons = max(1, args.gallery // per_person)
    url = _new_database(pg)
    with hub_process(tmp, key, store_url=url, workers=1, **hub) as (base, proc):
        probes = _enrol(base, key, root)
        warm_up(base, key, probes, 1)
        fingerprint, dim = _fingerprint(base, key)
        _progress(f"gallery: writing {persons * per_person} synthetic faces ({persons} persons) into group bench")
        fill_gallery(url, fingerprint, dim, persons, per_person, "bench")
        t0 = time.monotonic()
        load(base, key, lambda c, i: c.identify(probes[0][1], ["bench"]), 1, 0.01)  # builds the gallery
        build_s = time.monotonic() - t0
        _progress(f"gallery: identify, 1 client then {args.concurrency}, {args.seconds:g} s each")
        one = load(base, key, lambda c, i: c.identify(probes[i % len(probes)][1], ["bench"]), 1, args.seconds)
        many = load(base, key, lambda c, i: c.identify(probes[i % len(probes)][1], ["bench"]), args.concurrency,
                    args.seconds)
        rss = _rss_mb(proc.pid)
    return {"faces": persons * per_person + 9, "persons": persons + 3, "first_identify_s": round(build_s, 2),
            "identify_1_client": one, "identify": many, "rss_mb": rss, "matching": matching_ms(url, fingerprint)}


def _enrol(base: str, key: str, root: Path):
    from edge.api.client import CloudClient

    with CloudClient(base, APPID, SECRET_ID, key, timeout=60) as admin:
        return enrol_people(admin, root)


def _fingerprint(base: str, key: str) -> tuple[str, int]:
    """The hub's primary fingerprint and its embedding size (from its sync feed)."""
    import base64

    import httpx

    from edge.api.client import CloudClient

    fingerprint = httpx.get(f"{base}/health", timeout=10).json()["fingerprint"]
    with CloudClient(base, APPID, SECRET_ID, key, timeout=60) as client:
        change = next(c for c in client.sync(0, fingerprint, limit=10)["changes"] if c.get("embedding"))
    return fingerprint, len(base64.b64decode(change["embedding"])) // 4


def _new_database(cluster_url: str) -> str:
    import psycopg

    name = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(cluster_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return cluster_url.rsplit("/", 1)[0] + "/" + name
