"""The edge's access log: hash-chained, head signed with the edge's key; an edited, deleted or
reordered record is found; retention keeps the chain verifiable."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edge.core.access_chain import GENESIS, record_hash
from edge.door.access_log import AccessLog

KEY = b"edge-own-secret-key-for-tests-0001"


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def log(tmp_path, clock) -> AccessLog:
    a = AccessLog(tmp_path / "access-log.db", KEY, retention_days=30, clock=clock)
    for i in range(6):
        clock.t += 60
        a.append("decision", door="front", person_id=f"p{i % 2}", decision="accept", outcome="grant",
                 reason="granted", rule="level:staff", event_id=f"ev{i}", score=0.71, liveness="live",
                 model_version="sface-int8", gallery_version="sync-7", rules_version=3)
    yield a
    a.close()


def tamper(log: AccessLog, sql: str, *args) -> None:
    conn = sqlite3.connect(log.path)
    conn.execute(sql, args)
    conn.commit()
    conn.close()


def body(log: AccessLog, seq: int) -> dict:
    conn = sqlite3.connect(log.path)
    (text,) = conn.execute("SELECT body FROM records WHERE seq = ?", (seq,)).fetchone()
    conn.close()
    return json.loads(text)


def test_records_are_chained_with_their_evidence_and_verify(log) -> None:
    records = log.records()
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert records[0]["prev"] == GENESIS
    assert all(b["prev"] == a["hash"] and record_hash(b) == b["hash"] for a, b in zip(records, records[1:]))
    assert records[2]["event_id"] == "ev2" and records[2]["rules_version"] == 3
    report = log.verify()
    assert report.ok and report.records == 6 and report.problems == []
    assert log.head()["head"]["seq"] == 6


def test_an_edited_record_is_found(log) -> None:
    record = body(log, 3)
    record["outcome"], record["reason"] = "grant", "duress"
    tamper(log, "UPDATE records SET body = ? WHERE seq = 3", json.dumps(record))
    report = log.verify()
    assert not report.ok and "edited at record 3" in report.problems[0]


def test_an_edit_with_its_hashes_recomputed_is_found_by_the_signed_head(log) -> None:
    # Whoever rewrites the chain from record 3 on (hashes and links made anew) lacks the key.
    prev = body(log, 2)["hash"]
    for seq in range(3, 7):
        record = body(log, seq)
        record["prev"] = prev
        if seq == 3:
            record["person_id"] = "someone-else"
        record["hash"] = record_hash(record)
        prev = record["hash"]
        tamper(log, "UPDATE records SET body = ? WHERE seq = ?", json.dumps(record), seq)
    head = log.head()["head"]
    tamper(log, "UPDATE meta SET value = ? WHERE key = 'head'",
           json.dumps({"seq": 6, "hash": prev, "hmac": head["hmac"]}))
    report = log.verify()
    assert not report.ok and "head signature does not match" in report.problems[0]
    # ...and the daemon's next record does not sign it into a sound chain: the forged head is
    # refused and stays found (before, one more record and `log verify` said ok, 7 records)
    from edge.door.access_log import HeadNotSigned

    with pytest.raises(HeadNotSigned, match="signature does not match"):
        log.append("door", door="front", reason="contact_open")
    report = log.verify()
    assert not report.ok and "head signature does not match" in report.problems[0]
    assert "edited at record 3" in report.problems[1]  # its person_id column is the one before the edit
    assert log.records()[-1]["seq"] == 6  # nothing appended


def test_a_head_naming_another_record_than_the_last_or_none_is_not_extended(log) -> None:
    from edge.door.access_log import HeadNotSigned

    tamper(log, "DELETE FROM records WHERE seq = 6")  # the head still names record 6
    with pytest.raises(HeadNotSigned, match="not the last record"):
        log.append("door", door="front", reason="contact_open")
    tamper(log, "DELETE FROM meta WHERE key = 'head'")  # records and no head
    with pytest.raises(HeadNotSigned, match="without a signed head"):
        log.append("door", door="front", reason="contact_open")


def test_a_log_pruned_to_its_anchor_goes_on(log, clock) -> None:
    log.mark_uploaded(6)
    clock.t += 40 * 86400
    assert log.prune() == 6
    assert log.append("door", door="front", reason="contact_open")["seq"] == 7
    assert log.verify().ok


def test_a_deleted_record_is_found_in_the_middle_and_at_the_end(log) -> None:
    tamper(log, "DELETE FROM records WHERE seq = 4")
    report = log.verify()
    assert not report.ok and "gap at record 5" in report.problems[0]


def test_a_deleted_last_record_is_found(log) -> None:
    tamper(log, "DELETE FROM records WHERE seq = 6")
    report = log.verify()
    assert not report.ok and "signed head is record 6, the chain ends at 5" in report.problems[0]


def test_reordered_records_are_found(log) -> None:
    four, five = body(log, 4), body(log, 5)
    tamper(log, "UPDATE records SET body = ? WHERE seq = 4", json.dumps(five))
    tamper(log, "UPDATE records SET body = ? WHERE seq = 5", json.dumps(four))
    report = log.verify()
    assert not report.ok and "reordered at record 4" in report.problems[0]


def test_another_key_does_not_verify(log, tmp_path) -> None:
    log.close()
    other = AccessLog(log.path, b"another-edge-key")
    assert "signature does not match" in other.verify().problems[0]
    other.close()


def test_prune_keeps_unuploaded_records_and_a_verifiable_anchor(log, clock) -> None:
    clock.t += 31 * 86400
    assert log.prune() == 0  # nothing uploaded yet: nothing may go
    log.mark_uploaded(4)
    assert log.prune() == 4
    assert [r["seq"] for r in log.records()] == [5, 6]
    report = log.verify()
    assert report.ok and (report.first, report.last, report.records) == (5, 6, 2)
    log.append("door", door="front", detail={"state": "held_open"})
    assert log.verify().ok
    # A record removed after the anchor is still found.
    tamper(log, "DELETE FROM records WHERE seq = 5")
    assert "gap at record 6" in log.verify().problems[0]


def test_a_forged_anchor_does_not_verify(log, clock) -> None:
    log.mark_uploaded(6)
    clock.t += 31 * 86400
    log.prune()
    tamper(log, "UPDATE meta SET value = ? WHERE key = 'anchor'", json.dumps({"seq": 3, "hash": GENESIS,
                                                                              "hmac": "00"}))
    assert not log.verify().ok


def test_append_refuses_unknown_kinds_and_fields_and_nan(log) -> None:
    with pytest.raises(ValueError):
        log.append("party", door="front")
    with pytest.raises(ValueError):
        log.append("decision", face_crop="...")  # a crop is sealed bytes, never text (log_crops)
    with pytest.raises(ValueError):
        log.append("decision", image="...")
    with pytest.raises(ValueError):
        log.append("decision", score=float("nan"))
    assert log.verify().ok and log.records()[-1]["seq"] == 6  # nothing half-written


def _edge_with_a_log(tmp_path, records: int = 3, **fields) -> tuple[Path, bytes, Path]:
    """An edge's storage (its local API key made) and config, and a log of `records` decisions
    signed with that key, as logs were before they had a key of their own: (storage, key, config)."""
    from edge.daemon.api_key import own_credential

    storage = tmp_path / "data"
    key = own_credential(storage, "app").secret_key.encode()
    config = tmp_path / "edge.toml"
    config.write_text(f'[storage]\npath = "{storage}"\n')
    a = AccessLog(storage / "access-log.db", key)
    for i in range(records):
        a.append("decision", door="front", person_id="ann", reason="granted", event_id=f"e{i}", **fields)
    a.close()
    written_before(storage / "access-log.db", key)
    return storage, key, config


def written_before(path: Path, key: bytes) -> None:
    """The log as code before 2026-12 left it: its head signed without its role, no mark."""
    from edge.core.access_chain import sign_head

    conn = sqlite3.connect(path)
    for name, raw in conn.execute("SELECT key, value FROM meta WHERE key IN ('head', 'anchor')").fetchall():
        value = json.loads(raw)
        value["hmac"] = sign_head(key, value["seq"], value["hash"])
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (json.dumps(value), name))
    conn.execute("DELETE FROM meta WHERE key = 'signed_by_role'")
    conn.commit()
    conn.close()


def test_cli_log_verify_with_the_edges_key_file(tmp_path, capsys) -> None:
    from edge.cli import main
    from edge.daemon.api_key import own_credential

    storage, key, config = _edge_with_a_log(tmp_path)
    a = AccessLog(storage / "access-log.db", key)
    a.close()
    assert main(["log", "verify", "--config", str(config), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 3
    tamper(a, "DELETE FROM records WHERE seq = 2")
    assert main(["log", "verify", "--config", str(config)]) == 1
    assert "gap at record 3" in capsys.readouterr().out
    (storage / "api-key.toml").unlink()  # no key: refused, and no new key made
    assert main(["log", "verify", "--config", str(config)]) == 2
    assert not (storage / "api-key.toml").exists()
    own_credential(storage, "app")  # a key again; the log file damaged: a clear error, exit 2
    capsys.readouterr()
    for f in storage.glob("access-log.db*"):
        f.unlink()
    (storage / "access-log.db").write_bytes(b"\x00not sqlite\xff" * 400)
    assert main(["log", "verify", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "access-log.db: file is not a database: damaged or not an SQLite database" in err and "Traceback" not in err
    other = tmp_path / "other.db"  # another SQLite file: not a sound empty log, and left as it was
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.commit()
    before = other.read_bytes()
    assert main(["log", "verify", "--config", str(config), "--log", str(other)]) == 2
    assert "is not an access log" in capsys.readouterr().err and other.read_bytes() == before


def test_log_verify_on_a_log_damaged_in_the_middle_says_so_with_exit_2(tmp_path, capsys) -> None:
    """A page overwritten in the middle of a long log made `log verify` end in a traceback with
    exit 1, the code of a broken chain, and no report."""
    from edge.cli import main

    storage, _, config = _edge_with_a_log(tmp_path, 3000, detail={"n": "x" * 200})
    data = bytearray((storage / "access-log.db").read_bytes())
    page = 4096
    data[100 * page: 100 * page + 64] = b"\xee" * 64
    (storage / "access-log.db").write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["log", "verify", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "damaged" in err and "Traceback" not in err


def test_a_clock_that_went_back_is_recorded_and_the_chain_stays_sound(log, clock) -> None:
    clock.t -= 3600
    record = log.append("decision", door="front", person_id="p0", reason="granted", detail={"note": "x"})
    assert record["detail"] == {"note": "x", "clock_back_s": 3600}  # 1 h before the record before
    assert log.verify().ok


def test_the_log_is_the_evaluators_history(tmp_path, clock) -> None:
    from edge.door.access import AccessPolicy
    from tests.door.test_access import DOC, TUESDAY_9, policy, req

    clock.t = TUESDAY_9 - 100
    log = AccessLog(tmp_path / "h.db", KEY, clock=clock)
    assert log.last_grant("ann") is None
    log.append("decision", door="front", person_id="ann", outcome="grant", reason="granted")
    clock.t += 10
    log.append("decision", door="back", person_id="ann", outcome="deny", reason="no_access_level")
    assert log.last_grant("ann", "front") == TUESDAY_9 - 100 and log.last_grant("ann") == TUESDAY_9 - 100
    assert log.last_grant("ann", "back") is None and log.last_grant("bob") is None
    p: AccessPolicy = policy(DOC)
    assert p.evaluate(req(TUESDAY_9), log).reason == "anti_passback"  # 100 s < timed_s 300
    assert p.evaluate(req(TUESDAY_9 + 300), log).granted
    log.close()


def test_after_the_clock_went_back_the_last_grant_is_the_last_written(tmp_path, clock) -> None:
    """The history was the grant of the latest time: after the clock was set back 500 s, that
    stayed the grant before the jump, and two grants 10 s apart each looked 500 s from it (timed
    anti-passback let a face through twice). The last grant is now the last one written."""
    from tests.door.test_access import DOC, TUESDAY_9, policy, req

    clock.t = TUESDAY_9
    log = AccessLog(tmp_path / "back.db", KEY, clock=clock)
    log.append("decision", door="front", person_id="ann", outcome="grant", reason="granted")
    clock.t = TUESDAY_9 - 500  # set back (an NTP step, a reboot without a real-time clock)
    p = policy(DOC)
    assert p.evaluate(req(clock.t), log).granted  # 500 s from the last grant either way
    log.append("decision", door="front", person_id="ann", outcome="grant", reason="granted")
    assert log.last_grant("ann", "front") == log.last_grant("ann") == TUESDAY_9 - 500
    assert p.evaluate(req(clock.t + 10), log).reason == "anti_passback"  # the same face 10 s later
    log.close()


def test_after_the_clock_went_back_in_out_anti_passback_still_knows_who_is_inside(tmp_path, clock) -> None:
    """In/out anti-passback compared the times of the last grants at the two doors: after the
    clock was set back an hour, an entry written after the jump looked older than the exit
    before it, and the same face entered again and again without leaving."""
    from tests.door.test_access import DOC, TUESDAY_9, policy, req

    p = policy({**DOC, "anti_passback": {"timed_s": 0, "response": "hard"}})
    log = AccessLog(tmp_path / "pair.db", KEY, clock=clock)
    clock.t = TUESDAY_9 + 3600
    log.append("decision", door="lab-in", person_id="ann", outcome="grant", reason="granted")
    clock.t += 60
    log.append("decision", door="lab-out", person_id="ann", outcome="grant", reason="granted")
    clock.t -= 3600  # set back
    assert p.evaluate(req(clock.t, door="lab-in"), log).granted  # she left: she may enter
    log.append("decision", door="lab-in", person_id="ann", outcome="grant", reason="granted")
    assert log.last_door("ann", ("lab-in", "lab-out")) == "lab-in"
    clock.t += 30
    v = p.evaluate(req(clock.t, door="lab-in"), log)
    assert (v.granted, v.reason) == (False, "anti_passback")  # inside: not again without leaving
    assert p.evaluate(req(clock.t, door="lab-out"), log).granted
    assert log.last_door("bob", ("lab-in", "lab-out")) is None and log.last_door("ann", ()) is None
    log.close()


def test_a_log_signed_with_the_local_apis_key_is_signed_again_under_its_own(tmp_path, capsys) -> None:
    """The log's head was signed, and its face crops sealed, with the secret of api-key.toml,
    which the badge reader and every local client are given: the reader's key opened every
    crop the hub stores and could re-sign a rewritten log. The log has a key of its own now
    (<storage>/log-key, given to nobody); a log signed before is signed again under it once."""
    from edge.cli import main
    from edge.daemon.log_key import own_log_key
    from edge.door.log_crops import CropError, CropSeal

    storage, readers, config = _edge_with_a_log(tmp_path)
    assert main(["log", "verify", "--config", str(config)]) == 0  # no log-key yet: the key it was signed with
    assert own_log_key(storage, make=False) is None

    own = own_log_key(storage)
    assert own is not None and own != readers and len(own) == 32
    log = AccessLog(storage / "access-log.db", own, former_key=readers)  # the daemon's next start
    log.append("door", door="front", reason="contact_open")
    assert log.verify().ok and log.verify().records == 4
    log.close()
    assert main(["log", "verify", "--config", str(config)]) == 0
    assert not AccessLog(storage / "access-log.db", readers).verify().ok  # the reader's key vouches for nothing
    sealed = CropSeal.from_edge_key(own).seal("e9", b"\xff\xd8a face\xff\xd9")
    with pytest.raises(CropError):
        CropSeal.from_edge_key(readers).open("e9", sealed)
    (storage / "log-key").chmod(0o644)
    from edge.core.settings import ConfigError

    with pytest.raises(ConfigError, match="readable by others"):
        own_log_key(storage)


def test_the_columns_anti_passback_reads_are_checked_against_their_records(log) -> None:
    """`granted`, `person_id`, `door` and `at` are copied out of each record for the evaluator
    (anti-passback's last grant), outside the chain: `UPDATE records SET granted = 0` let a
    passback through and `log verify` still said ok."""
    assert log.last_grant("p1") is not None
    tamper(log, "UPDATE records SET granted = 0")
    assert log.last_grant("p1") is None
    report = log.verify()
    assert not report.ok and "edited at record 1" in report.problems[0] and "access rules read" in report.problems[0]


def test_verify_reads_one_snapshot_while_the_daemon_appends(log, tmp_path, monkeypatch) -> None:
    """`log verify` (another process) read the head, then the records in a statement of their
    own: a record the daemon appended in between made a sound log read "the signed head is
    record 6, the chain ends at 7". It reads one snapshot now."""
    daemon = AccessLog(log.path, KEY)  # the daemon's own connection to the same file
    real_end = log._end
    appended = []

    def end_then_an_append(name):
        value = real_end(name)
        if name == "head" and not appended:
            appended.append(daemon.append("door", door="front", reason="contact_open"))
        return value

    monkeypatch.setattr(log, "_end", end_then_an_append)
    report = log.verify()
    assert appended and report.ok and report.records == 6, report.problems
    monkeypatch.undo()
    assert log.verify().records == 7
    daemon.close()


def test_an_anchor_copied_over_the_head_of_an_emptied_log_does_not_verify(log, clock) -> None:
    """Head and anchor were signed over the same message: after a prune, deleting the records
    left and copying the anchor into the head made a sound log of none. Each is signed for its
    role now."""
    log.mark_uploaded(3)
    clock.t += 40 * 86400
    assert log.prune() == 3
    tamper(log, "DELETE FROM records")
    anchor = log.head()["anchor"]
    tamper(log, "UPDATE meta SET value = ? WHERE key = 'head'", json.dumps(anchor))
    report = log.verify()
    assert not report.ok and "head signature does not match" in report.problems[0]


def test_once_signed_by_role_under_its_own_key_a_log_takes_neither_the_old_way_nor_the_former_key(tmp_path) -> None:
    """The former key is the local API's, which the badge reader holds: taken after the log was
    moved to its own key, its holder could rewrite the log, sign its head the old way, and have
    the daemon's next start sign it anew."""
    from edge.core.access_chain import record_hash, sign_head
    from edge.daemon.log_key import own_log_key
    from edge.door.access_log import HeadNotSigned

    storage, readers, _ = _edge_with_a_log(tmp_path)
    own = own_log_key(storage)
    AccessLog(storage / "access-log.db", own, former_key=readers).close()  # moved to its own key, by role
    conn = sqlite3.connect(storage / "access-log.db")  # the reader's key holder rewrites record 3
    record = json.loads(conn.execute("SELECT body FROM records WHERE seq = 3").fetchone()[0])
    record["person_id"] = "someone-else"
    record["hash"] = record_hash(record)
    conn.execute("UPDATE records SET body = ?, person_id = 'someone-else' WHERE seq = 3", (json.dumps(record),))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'head'",
                 (json.dumps({"seq": 3, "hash": record["hash"], "hmac": sign_head(readers, 3, record["hash"])}),))
    conn.commit()
    conn.close()
    again = AccessLog(storage / "access-log.db", own, former_key=readers)  # the daemon's next start
    with pytest.raises(HeadNotSigned):
        again.append("door", door="front", reason="contact_open")
    assert not again.verify().ok
    again.close()


def test_face_crops_keep_to_their_budget_and_records_without_a_hub_to_their_age(tmp_path):
    """The crops were bounded by age only (a year of a busy door's crops is gigabytes on the
    card), and without a hub no record was ever pruned (they waited for a hub there is none of).
    The oldest crops go beyond `crops_max_bytes`; records past retention go when no hub waits."""
    import os

    day = 86400.0
    now = [1_800_000_000.0 - 400 * day]
    crop = os.urandom(10_000)
    log = AccessLog(tmp_path / "access-log.db", b"k" * 32, retention_days=365, clock=lambda: now[0],
                    crops_max_bytes=55_000, waits_for_hub=False)
    for _ in range(3):
        log.append("decision", door="main", outcome="deny", reason="not_accepted", face_crop=crop)
    now[0] += 300 * day
    for _ in range(7):
        log.append("decision", door="main", outcome="deny", reason="not_accepted", face_crop=crop)
    assert log.prune_crops() == 5  # 100 KB of crops: the 5 oldest go (55 KB budget)
    kept = log._db.execute("SELECT seq FROM crops ORDER BY seq").fetchall()
    assert [s for (s,) in kept] == [6, 7, 8, 9, 10]
    now[0] += 100 * day  # the first three are 400 days old now
    assert log.prune() == 3 and [r["seq"] for r in log.records(0, 100)] == list(range(4, 11))
    assert log.verify().ok  # the chain still verifies from its signed anchor
    log.close()
