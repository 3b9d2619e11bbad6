"""The access log reaches the hub once: batches with a cursor over the signed channel, resumed
after an outage, idempotent by record; the hub verifies the chain on arrival (a tampered or a
truncated upload is refused with its code and counted) and serves search (API and CLI)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from edge.api.client import CloudApiError
from edge.core import errors
from edge.core.access_chain import GENESIS, LOG_EDITED, LOG_GAP, LOG_MALFORMED, canonical, record_hash
from edge.door.access_log import AccessLog
from edge.door.access_upload import Uploader
from edge.hub.store import SqliteStore
from tests.support.hub import start_hub

KEY = b"edge-key-upload-tests"
T0 = 1_800_000_000.0


def filled_log(path, n: int, start: float = T0) -> AccessLog:
    t = [start]

    def clock() -> float:
        t[0] += 600  # one record every 10 minutes
        return t[0]
    log = AccessLog(path, KEY, clock=clock)
    for i in range(n):
        log.append("decision", door="front" if i % 3 else "lab", person_id=f"p{i % 4}", decision="accept",
                   outcome="grant" if i % 5 else "deny", reason="granted" if i % 5 else "outside_schedule",
                   event_id=f"ev{i}", score=0.7)
    return log


@pytest.fixture
def store(hub_store):
    return hub_store


def refused(fn, *args) -> int:
    with pytest.raises(Exception) as err:
        fn(*args)
    return err.value.code  # type: ignore[attr-defined]


def test_store_verifies_the_chain_and_is_idempotent(store, tmp_path) -> None:
    records = filled_log(tmp_path / "a.db", 12).records()
    assert store.store_access_records("app", "edge-1", records[:5]) == (5, 5)
    assert store.store_access_records("app", "edge-1", records[:8]) == (3, 8)  # 1-5 again: skipped
    assert refused(store.store_access_records, "app", "edge-1", records[9:]) == LOG_GAP  # 9 missing
    edited = [dict(r) for r in records[8:]]
    edited[1]["reason"] = "duress"
    assert refused(store.store_access_records, "app", "edge-1", edited) == LOG_EDITED
    rehashed = [dict(r) for r in records[8:]]
    rehashed[0]["person_id"] = "someone"
    rehashed[0]["hash"] = record_hash(rehashed[0])  # a consistent record, but not the chain's
    assert refused(store.store_access_records, "app", "edge-1", rehashed) == LOG_EDITED
    changed_stored = dict(records[2], person_id="p9")
    changed_stored["hash"] = record_hash(changed_stored)
    assert refused(store.store_access_records, "app", "edge-1", [changed_stored]) == LOG_EDITED
    assert store.access_chain("app", "edge-1")["seq"] == 8  # nothing of the refused batches stored
    assert store.store_access_records("app", "edge-1", records[8:]) == (4, 12)
    # Another edge's chain (and another appid's) is its own.
    assert store.store_access_records("app", "edge-2", records[:1]) == (1, 1)
    assert store.store_access_records("other", "edge-1", records[:1]) == (1, 1)
    chains = store.access_chains("app")  # the doors page's one query: this appid's edges only
    assert {e: c["seq"] for e, c in chains.items()} == {"edge-1": 12, "edge-2": 1}
    assert chains["edge-1"] == store.access_chain("app", "edge-1") and store.access_chain("app", "edge-3") is None

    page, nxt = store.search_access("app", {"person_id": "p1", "edge_id": "edge-1"}, limit=2)
    assert [r["seq"] for r in page] == [2, 6] and nxt is not None
    page, nxt = store.search_access("app", {"person_id": "p1", "edge_id": "edge-1"}, after=nxt, limit=2)
    assert [r["seq"] for r in page] == [10] and nxt is None
    hits, _ = store.search_access("app", {"outcome": "deny", "door": "lab"}, since=T0, until=T0 + 12 * 600 + 1)
    assert [(r["edge_id"], r["seq"]) for r in hits] == [("edge-1", 1), ("edge-2", 1)]  # same time: by edge
    denied, _ = store.search_access("app", {"outcome": "deny", "edge_id": "edge-1"})
    assert [r["seq"] for r in denied] == [1, 6, 11] and {r["reason"] for r in denied} == {"outside_schedule"}
    late, _ = store.search_access("app", {}, since=T0 + 10 * 600)
    assert [r["seq"] for r in late] == [10, 11, 12]


@pytest.fixture
def hub(tmp_path, models_dir):
    with start_hub(tmp_path / "hub") as hub:
        yield hub


def test_upload_in_batches_resumes_after_an_outage_and_searches(hub, tmp_path, capsys) -> None:
    log = filled_log(tmp_path / "edge.db", 25)
    with hub.client(timeout=10.0, retries=0) as client:
        up = Uploader(client, log, "door-edge-1", batch=10, max_batches=2)
        state = up.run_once()
        assert (state["status"], state["uploaded"], state["sent"]) == ("ok", 20, 20)
        # The answer to the next batch is lost: the hub stored it, the edge does not know.
        client.uploadlog("door-edge-1", canonical(log.records(20, 10)))
        assert up.run_once()["uploaded"] == 25  # sent again, stored once
        assert len(client.searchlog(edge_id="door-edge-1", limit=1000)["records"]) == 25

    # An outage: the hub cannot be reached, records keep coming; then it answers again.
    dead = type(client)("http://127.0.0.1:9", hub.appid, hub.secret_id, hub.secret_key, timeout=1.0, retries=0)
    for i in range(5):
        log.append("exit", door="front", detail={"button": i})
    up.client = dead
    assert up.run_once()["status"] == "offline" and log.uploaded == 25
    dead.close()
    with hub.client(timeout=10.0, retries=0) as client:
        up.client = client
        assert up.run_once()["uploaded"] == 30
        found = client.searchlog(kind="exit", door="front", limit=3)
        assert [r["seq"] for r in found["records"]] == [26, 27, 28] and found["next"]
        rest = client.searchlog(kind="exit", door="front", limit=3, after=found["next"])
        assert [r["seq"] for r in rest["records"]] == [29, 30] and rest["next"] == ""
        assert [r["event_id"] for r in client.searchlog(person_id="p1", since=int(T0), until=int(T0) + 3600)
                ["records"]] == ["ev1"]  # the first hour: records at +10 .. +60 min
        with pytest.raises(CloudApiError) as err:
            client.searchlog(after="not-a-cursor")
        assert err.value.code == errors.INVALID_PARAMETER


def test_a_restarted_hub_gets_the_rest(tmp_path, models_dir) -> None:
    log = filled_log(tmp_path / "edge.db", 7)
    with start_hub(tmp_path / "hub") as hub, hub.client(timeout=10.0, retries=0) as client:
        up = Uploader(client, log, "e1", batch=3)
        assert up.run_once()["uploaded"] == 7
    for _ in range(4):
        log.append("alarm", door="front", reason="forced")
    with start_hub(tmp_path / "hub") as hub, hub.client(timeout=10.0, retries=0) as client:  # same store
        up.client = client
        assert up.run_once()["uploaded"] == 11
        found = client.searchlog(kind="alarm", door="front")
        assert [r["seq"] for r in found["records"]] == [8, 9, 10, 11] and found["next"] == ""


def test_tampered_and_truncated_uploads_are_refused_and_counted(hub, tmp_path) -> None:
    records = filled_log(tmp_path / "edge.db", 9).records()
    with hub.client(timeout=10.0, retries=0) as client:
        client.uploadlog("e1", canonical(records[:3]))
        tampered = [dict(r) for r in records[3:6]]
        tampered[1]["reason"] = "duress"
        assert code(client.uploadlog, "e1", canonical(tampered)) == LOG_EDITED
        assert code(client.uploadlog, "e1", canonical(records[5:])) == LOG_GAP  # 4 and 5 left out
        assert code(client.uploadlog, "e1", canonical(records[3:])[:-40]) == LOG_MALFORMED  # cut mid-batch
        assert code(client.uploadlog, "e1", json.dumps({"not": "a list"})) == LOG_MALFORMED
        chain = hub.store.access_chain(hub.appid, "e1")
        assert (chain["seq"], chain["refused"]) == (3, 4) and "a list" in chain["last_refusal"]
        # An uploader meeting a refusal says so and does not skip anything: it sends again what
        # the hub lacks (an edge that believes 4 and 5 arrived; a hub restored from a backup).
        log = AccessLog(tmp_path / "edge.db", KEY)
        log.mark_uploaded(5)
        up = Uploader(client, log, "e1")
        state = up.run_once()
        assert state["status"] == "refused" and "-1520" in state["last_error"] and log.uploaded == 3
        assert hub.store.access_chain(hub.appid, "e1")["refused"] == 5
        assert up.run_once()["status"] == "ok" and hub.store.access_chain(hub.appid, "e1")["seq"] == 9


def code(fn, *args) -> int:
    with pytest.raises(CloudApiError) as err:
        fn(*args)
    return err.value.code


def test_cli_log_search_on_the_hubs_config(tmp_path, capsys) -> None:
    from edge.cli import main

    store = SqliteStore(tmp_path / "hub.sqlite3")
    store.store_access_records("1000001", "e1", filled_log(tmp_path / "edge.db", 10).records())
    store.close()
    config = tmp_path / "hub.toml"
    config.write_text(f'[storage]\npath = "{tmp_path / "hub.sqlite3"}"\n[[credentials]]\nappid = "1000001"\n'
                      f'secret_id = "AKIDclitest000000000000000000000001"\nsecret_key = "{"k" * 40}"\n')
    config.chmod(0o600)
    since = dt.datetime.fromtimestamp(T0, dt.timezone.utc).isoformat()
    assert main(["log", "search", "--config", str(config), "--person", "p2", "--since", since, "--limit", "1"]) == 0
    out, err = capsys.readouterr()
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [3]
    cursor = err.split("--after ")[1].strip()
    assert main(["log", "search", "--config", str(config), "--person", "p2", "--after", cursor]) == 0
    assert [json.loads(line)["seq"] for line in capsys.readouterr().out.splitlines()] == [7]
    assert main(["log", "search", "--config", str(config), "--after", "bogus"]) == 2


def test_another_tenant_neither_sees_nor_extends_the_log(hub, tmp_path) -> None:
    from edge.api.client import CloudClient

    records = filled_log(tmp_path / "edge.db", 4).records()
    with hub.client(timeout=10.0, retries=0) as mine, \
            CloudClient(hub.url, hub.other_appid, hub.other_secret_id, hub.other_secret_key,
                        timeout=10.0, retries=0) as other:
        mine.uploadlog("e1", canonical(records[:2]))
        mine.setrules(json.dumps({"timezone": "UTC"}))
        assert other.searchlog(edge_id="e1")["records"] == []
        assert other.getrules() == {"version": 0, "rules": ""}
        # The same edge_id under another appid is another chain: it starts at 1, not at 3.
        assert code(other.uploadlog, "e1", canonical(records[2:])) == LOG_GAP
        assert [r["seq"] for r in mine.searchlog(edge_id="e1")["records"]] == [1, 2]


def test_an_edge_log_restored_from_a_backup_does_not_skip_its_new_records(hub, tmp_path) -> None:
    """The edge's cursor took whatever head the hub answered: with its log restored from a
    backup (head 15, uploaded 10) while the hub held 1..30, one upload of what the hub had moved
    the cursor to 30, and the 5 records written next (16..20) were never sent, with status ok
    (then pruned by retention). The cursor now moves to the batch's end, and the fork shows."""
    import shutil

    path = tmp_path / "edge.db"
    log = filled_log(path, 15)
    with hub.client(timeout=10.0, retries=0) as client:
        Uploader(client, log, "door-restored", batch=10, max_batches=1).run_once()  # the hub: 1..10
        log.close()
        shutil.copy(path, tmp_path / "backup.db")  # head 15, uploaded 10
        log = AccessLog(path, KEY)
        for i in range(15):
            log.append("exit", door="front", detail={"button": i})
        assert Uploader(client, log, "door-restored", batch=100).run_once()["uploaded"] == 30  # the hub: 1..30
        log.close()
        for suffix in ("-wal", "-shm"):
            (tmp_path / f"edge.db{suffix}").unlink(missing_ok=True)
        shutil.copy(tmp_path / "backup.db", path)  # the SD card restored
        log = AccessLog(path, KEY)
        up = Uploader(client, log, "door-restored", batch=100)
        assert up.run_once()["uploaded"] == 15  # what it holds and the hub has: never past its own head
        for i in range(5):
            log.append("exit", door="lab", detail={"after_restore": i})
        state = up.run_once()
        assert state["status"] == "refused" and log.uploaded == 15  # the fork is said, nothing skipped
        assert len(log.records(15, 100)) == 5  # kept until the hub can take them
    log.close()


@pytest.mark.parametrize("field, value", [
    ("person_id", "../../face/<form hx-post=x>"), ("person_id", "ann bob"), ("door", "lab/in"),
    ("reason", "granted\u202e"), ("reason", "two\nlines"), ("person_id", "p" * 129),
])
def test_a_record_whose_ids_are_no_ids_or_whose_text_holds_controls_is_refused(store, field, value) -> None:
    """A door key's record is shown to operators: its person_id and door become console links,
    its text is read by people. A person_id that was a path (`../../face/<form …>`) took an
    admin's click out of the console into an HTML answer that made an admin account; bidi
    controls made `Lobby ‮detnarg‬` read "Lobby granted"; a newline forged a log line."""
    record = {"seq": 1, "record_id": "r1", "at": T0, "kind": "decision", "prev": GENESIS, "door": "front",
              "person_id": "p1", "decision": "accept", "outcome": "grant", "reason": "granted", field: value}
    record["hash"] = record_hash(record)
    assert refused(store.store_access_records, "app", "door-edge-1", [record]) == LOG_MALFORMED


def test_records_arriving_together_go_in_one_request(hub, tmp_path) -> None:
    """Each record woke the upload at once: a request, a cursor commit (fsync) and a prune per
    decision, about 6 fsyncs and 130 KB written per decision on the SD card. A wake-up gathers
    the records that follow for GATHER_S; the log is pruned at most hourly."""
    import threading
    import time

    from tests.conftest import wait_until

    log = filled_log(tmp_path / "edge.db", 1)
    with hub.client(timeout=10.0, retries=0) as client:
        calls: list[int] = []
        real = client.uploadlog

        def counted(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        client.uploadlog = counted  # type: ignore[method-assign]
        up = Uploader(client, log, "door-edge-g", interval_s=3600)
        pruned: list[int] = []
        log.prune = lambda *a, **k: pruned.append(1) or 0  # type: ignore[method-assign]
        stop = threading.Event()
        thread = threading.Thread(target=up.run, args=(stop,), daemon=True)
        thread.start()
        try:
            assert wait_until(lambda: log.uploaded == 1, 10)
            for _ in range(8):  # a burst of decisions, each waking the upload
                log.append("decision", door="main", person_id="ann", decision="reject", outcome="deny", reason="r")
                up.trigger()
                time.sleep(0.05)
            assert wait_until(lambda: log.uploaded == 9, 15)
        finally:
            stop.set()
            up.trigger()
            thread.join(10)
    assert len(calls) == 2 and len(pruned) == 1, (calls, pruned)  # the first record, then the burst in one


def test_a_hub_restored_from_a_backup_gets_the_records_it_lost_again(tmp_path, models_dir) -> None:
    """docs/hub.md's restore: the hub's copy of a door's chain went back to the backup's end
    (10) while the door's cursor said 20; every upload after was refused (-1520) for good, the
    door degraded, and the records 11..20 reached the hub never, though the door still held
    them. The door sends the records after the hub's end again (checked by the hub against its
    own end of the chain: nothing is re-based)."""
    import shutil

    from edge.hub.backup import backup_sqlite

    log = filled_log(tmp_path / "edge.db", 20)
    with start_hub(tmp_path / "hub") as hub, hub.client(timeout=10.0, retries=0) as client:
        Uploader(client, log, "door-1", batch=10, max_batches=1).run_once()  # the hub: 1..10
        backup_sqlite(hub.store_path, tmp_path / "backup.sqlite3")
        assert Uploader(client, log, "door-1", batch=100).run_once()["uploaded"] == 20
    for suffix in ("", "-wal", "-shm"):
        (tmp_path / "hub" / f"hub.sqlite3{suffix}").unlink(missing_ok=True)
    shutil.copy(tmp_path / "backup.sqlite3", tmp_path / "hub" / "hub.sqlite3")
    log.append("decision", door="front", person_id="p1", decision="accept", outcome="grant", reason="granted")
    with start_hub(tmp_path / "hub") as hub, hub.client(timeout=10.0, retries=0) as client:
        up = Uploader(client, log, "door-1", batch=100)
        first = up.run_once()
        assert first["status"] == "refused" and log.uploaded == 10  # the hub's end: sent again at once
        assert up.run_once()["status"] == "ok" and log.uploaded == 21
        assert [r["seq"] for r in client.searchlog(edge_id="door-1", limit=100)["records"]] == list(range(1, 22))
    log.close()


def test_records_pruned_since_are_not_sent_again_and_the_cursor_stays(tmp_path) -> None:
    """Only a log that still holds every record after the hub's end moves its cursor back."""
    filled_log(tmp_path / "edge.db", 20).close()
    log = AccessLog(tmp_path / "edge.db", KEY, retention_days=1)
    log.mark_uploaded(20)
    assert log.prune(now=T0 + 20 * 600 + 86400 + 1) == 20
    log.append("exit", door="front")
    assert not log.resend_after(10) and log.uploaded == 20
    assert not log.resend_after(25) and log.uploaded == 20  # never forward
    log.close()
