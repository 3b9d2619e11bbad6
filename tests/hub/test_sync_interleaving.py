"""Writers in several processes over one PostgreSQL database, some slow to commit, while an edge
syncs through a hub: the edge never skips a change (its cache ends equal to the hub), and the
count limits hold when the writers' transactions overlap.

A slow writer takes its change numbers, then waits before committing. With a bare sequence the
fast writers' later numbers would become visible first, the edge's cursor would pass the slow
writer's numbers, and its changes would be lost for that edge. PostgresStore orders one appid's
writers with an advisory lock, so numbers follow commit order (edge/hub/store/postgres.py)."""

from __future__ import annotations

import multiprocessing
import random
import time

import numpy as np
import pytest

from edge.core.errors import ApiError
from edge.hub.store import FaceRecord, Limits
from edge.hub.store.postgres import PostgresStore
from tests.support.hub import APPID, start_hub

pytestmark = pytest.mark.timeout(300)
DIM = 128


class SlowCommitStore(PostgresStore):
    """Waits inside the transaction after each change number it takes (the slow writer)."""

    delay_s = 0.0

    def _log(self, c, appid, kind, person_id, face_id=None):
        super()._log(c, appid, kind, person_id, face_id)
        if self.delay_s:
            time.sleep(random.uniform(self.delay_s / 2, self.delay_s))


def face(person_id: str, fingerprint: str, rng: np.random.Generator) -> FaceRecord:
    vec = rng.normal(size=DIM).astype(np.float32)  # random: distinct faces, any embedder size
    return FaceRecord(f"{person_id}-f{rng.integers(1 << 30)}", person_id, (0, 0, 10, 10), [[0.0, 0.0]] * 5,
                      embeddings={fingerprint: vec / np.linalg.norm(vec)})


def writer(url: str, name: str, fingerprint: str, persons: int, delay_s: float, seed: int) -> None:
    """Enrol `persons` persons (a face each, some a second face), delete every fourth again."""
    store = SlowCommitStore(url, pool_size=1)
    store.delay_s = delay_s
    rng = np.random.default_rng(seed)
    for i in range(persons):
        pid = f"{name}-{i}"
        store.create_person(APPID, pid, ["staff"], pid, "", face(pid, fingerprint, rng), Limits())
        if i % 3 == 1:
            store.add_faces(APPID, pid, [face(pid, fingerprint, rng)], Limits())
        if i % 4 == 3:
            store.delete_person(APPID, f"{name}-{i - 1}")
    store.close()


def adder(url: str, fingerprint: str, attempts: int, seed: int, results) -> None:
    """Try to add one face at a time to person `p` (limit 8 faces), slowly."""
    store = SlowCommitStore(url, pool_size=1)
    store.delay_s = 0.02
    rng = np.random.default_rng(seed)
    for _ in range(attempts):
        try:
            store.add_faces(APPID, "p", [face("p", fingerprint, rng)], Limits(faces_per_person=8))
            results.put(0)
        except ApiError as exc:
            results.put(exc.code)
    store.close()


def test_an_edge_syncing_during_slow_and_fast_writers_never_skips_a_change(pg_url, tmp_path, models_dir):
    from edge.daemon.cache import EdgeCache
    from edge.daemon.sync import Syncer

    with start_hub(tmp_path, pg_url) as hub:
        fingerprint = hub.app.state.service.vision.primary.fingerprint
        client = hub.client(timeout=30, retries=0)
        cache = EdgeCache(tmp_path / "edge.sqlite3")
        syncer = Syncer(client, cache, fingerprint, page_size=7)
        spawn = multiprocessing.get_context("spawn")
        # two slow writers (each change number held up to 0.1 s before commit), two fast ones
        writers = [spawn.Process(target=writer, args=(pg_url, f"slow{i}", fingerprint, 10, 0.1, i)) for i in range(2)]
        writers += [spawn.Process(target=writer, args=(pg_url, f"fast{i}", fingerprint, 40, 0.0, 2 + i))
                    for i in range(2)]
        for w in writers:
            w.start()
        rounds = 0
        while any(w.is_alive() for w in writers):
            state = syncer.sync_once()
            assert state["status"] in ("ok", "syncing"), state
            rounds += 1
            time.sleep(random.uniform(0, 0.01))
        for w in writers:
            w.join(timeout=60)
            assert w.exitcode == 0
        syncer.sync_once()
        edge = {f.face_id: (f.person_id, np.asarray(f.embedding, "<f4").tobytes()) for f in cache.gallery().faces}
        truth = {e.face_id: (e.person_id, np.asarray(e.embedding, "<f4").tobytes())
                 for e in hub.store.embeddings(APPID, fingerprint)}
        client.close()
        cache.close()
    assert rounds >= 10  # the edge really synced while the writers ran
    assert {pid.split("-")[0] for pid, _ in truth.values()} == {"slow0", "slow1", "fast0", "fast1"}
    assert edge.keys() == truth.keys(), f"skipped: {sorted(truth.keys() - edge.keys())[:5]}"
    assert edge == truth


def test_count_limits_hold_when_processes_write_at_once(pg_url):
    store = PostgresStore(pg_url)
    rng = np.random.default_rng(0)
    store.create_person(APPID, "p", ["staff"], "", "", face("p", "fp", rng), Limits())
    spawn = multiprocessing.get_context("spawn")
    results = spawn.Queue()
    procs = [spawn.Process(target=adder, args=(pg_url, "fp", 5, 10 + i, results)) for i in range(4)]
    for p in procs:
        p.start()
    codes = [results.get(timeout=120) for _ in range(20)]
    for p in procs:
        p.join(timeout=60)
    faces = store.face_ids(APPID, "p")
    store.close()
    assert codes.count(0) == 7 and codes.count(-1309) == 13, codes
    assert len(faces) == 8
