"""Several real hub processes over one PostgreSQL database: any of them answers any request, and
the limits hold across them under concurrency (rate limit, faces per person, persons per group,
groups per appid); a person enrolled through one is matched by the other on the next request."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from edge.api.client import CloudApiError, CloudRateLimited
from edge.core import errors
from tests.support.pg import hub_processes

pytestmark = pytest.mark.timeout(300)


def outcome(call) -> int:
    """The API code of one call (0 for success)."""
    try:
        call()
    except CloudApiError as exc:
        return exc.code
    except CloudRateLimited:  # the client's name for code 15
        return errors.RATE_LIMITED
    return 0


def test_the_rate_limit_is_one_bucket_shared_by_every_process(pg_url, tmp_path):
    # A negligible refill: exactly `burst` requests pass, whichever process they reach.
    with hub_processes(tmp_path, pg_url, 2, limits={"rate_per_s": 0.001, "burst": 6}) as hubs:
        clients = [hub.client(timeout=30, retries=0) for hub in hubs]
        codes = [outcome(clients[i % 2].getgroupids) for i in range(16)]
        for c in clients:
            c.close()
    assert codes.count(0) == 6 and set(codes) == {0, 15}, codes


def test_concurrent_addface_through_two_processes_never_passes_the_per_person_limit(pg_url, tmp_path, photos):
    images = photos.train("Jerry_Seinfield", 8)
    with hub_processes(tmp_path, pg_url, 2, limits={"faces_per_person": 4}) as hubs:
        clients = [hub.client(timeout=60, retries=0) for hub in hubs]
        clients[0].newperson("jerry", ["staff"], images[0])
        for c in clients:  # models loaded in both before the race
            c.getinfo("jerry")
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda i: outcome(lambda: clients[i % 2].addface("jerry", [images[1 + i]])),
                                  range(6)))
        faces = clients[1].getinfo("jerry")["face_ids"]
        for c in clients:
            c.close()
    # every photo has a face and none is a near-copy of another: only the limit refuses
    assert codes.count(0) == 3 and codes.count(-1309) == 3, codes
    assert len(faces) == 4


def test_concurrent_newperson_through_two_processes_respects_group_limits(pg_url, tmp_path, photos):
    people = ["Ben_Afflek", "Elton_John", "Jerry_Seinfield", "Madonna", "Mindy_Kaling"]
    images = {p: photos.train(p, 2) for p in people}
    limits = {"persons_per_group": 3, "groups_per_appid": 2}
    with hub_processes(tmp_path, pg_url, 2, limits=limits) as hubs:
        clients = [hub.client(timeout=60, retries=0) for hub in hubs]
        clients[0].newperson("seed", ["staff"], images["Ben_Afflek"][1])
        clients[1].getinfo("seed")

        def enrol(i: int) -> int:
            person = people[i % 5]
            return outcome(lambda: clients[i % 2].newperson(f"{person.lower()}-{i}", ["staff"], images[person][0]))

        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(enrol, range(6)))
        members = clients[0].getpersonids("staff")["person_ids"]

        def new_group(i: int) -> int:
            person = people[i % 5]
            return outcome(lambda: clients[i % 2].newperson(f"g-{i}", [f"group-{i}"], images[person][1]))

        with ThreadPoolExecutor(4) as pool:
            group_codes = list(pool.map(new_group, range(4)))
        groups = clients[1].getgroupids()["group_ids"]
        for c in clients:
            c.close()
    assert codes.count(0) == 2 and codes.count(-1310) == 4, codes
    assert len(members) == 3
    assert group_codes.count(0) == 1 and group_codes.count(-1311) == 3, group_codes
    assert len(groups) == 2


def test_a_person_enrolled_through_one_process_is_matched_by_the_other_at_once(pg_url, tmp_path, photos):
    from edge.hub.store import open_store

    ben, madonna = photos.train("Ben_Afflek", 3), photos.train("Madonna", 3)
    with hub_processes(tmp_path, pg_url, 2) as hubs:
        a, b = (hub.client(timeout=60, retries=0) for hub in hubs)
        a.newperson("madonna", ["staff"], madonna[0])
        assert b.identify(madonna[1], ["staff"])["candidates"][0]["person_id"] == "madonna"  # B's gallery built
        a.newperson("ben", ["staff"], ben[0])
        top = b.identify(ben[1], ["staff"])["candidates"][0]  # the very next request to B
        assert top["person_id"] == "ben" and top["confidence"] >= 70
        a.delperson("ben")
        assert all(c["person_id"] != "ben" for c in b.identify(ben[1], ["staff"])["candidates"])
        session = b.verify("madonna", madonna[2])["session_id"]
        a.close()
        b.close()
    store = open_store(pg_url)  # the verify log is the shared database's
    record = store.get_verify(session)
    store.close()
    assert record is not None and record.person_id == "madonna" and record.ismatch


def test_several_workers_on_sqlite_are_refused_with_the_reason(tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT
    from tests.support.pg import write_hub_config

    cfg = write_hub_config(tmp_path / "hub.toml", 1, "", "k" * 32, storage={"path": str(tmp_path / "h.sqlite3")})
    done = subprocess.run([sys.executable, "-m", "edge", "hub", "--config", str(cfg), "--workers", "2"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)
    assert done.returncode == 2 and "needs [storage] url" in done.stderr


def test_one_photo_added_through_two_processes_at_once_is_stored_once(pg_url, tmp_path, photos):
    images = photos.train("Elton_John", 3)
    with hub_processes(tmp_path, pg_url, 2) as hubs:
        clients = [hub.client(timeout=60, retries=0) for hub in hubs]
        clients[0].newperson("elton", ["staff"], images[0])
        for c in clients:
            c.getinfo("elton")
        with ThreadPoolExecutor(6) as pool:
            codes = list(pool.map(lambda i: outcome(lambda: clients[i % 2].addface("elton", [images[1]])), range(6)))
        faces = clients[0].getinfo("elton")["face_ids"]
        for c in clients:
            c.close()
    assert codes.count(0) == 1 and codes.count(-1312) == 5, codes
    assert len(faces) == 2
