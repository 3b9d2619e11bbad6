"""A stolen badge gets a few tries ([verify] max_refusals, edge.daemon.claim_lockout).

A claim holds FAR 1e-4, but nothing stopped a stranger holding a member's badge from presenting
it again and again, each claim one more chance. After max_refusals claims of one person refused
on the face within refusal_window_s, that person's claims are refused at once for lockout_s.
The counts survive a restart (a power cut at the door must not give the badge new tries)."""

from __future__ import annotations

import json
import shutil
import time
from contextlib import closing

import jsonschema

from edge.core.domain import Claim, Decision, Mode, Source
from edge.daemon.claim_lockout import LOCKED_OUT, MAX_PERSONS, ClaimLockout, LockoutStore
from edge.daemon.claims import Claims
from edge.daemon.decide import Outcome
from edge.schemas import schema
from tests.conftest import free_port
from tests.support.broker import DaemonProc, edge_command, write_edge_config
from tests.support.hub import bind_edge_key, hub_with_five_enrolled


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_the_nth_refusal_within_the_window_locks_the_person_out_for_a_while():
    clock = _Clock()
    lock = ClaimLockout(3, window_s=60, lockout_s=300, clock=clock)
    assert [lock.refused("alice") for _ in range(2)] == [False, False] and lock.locked("alice") == 0
    clock.t += 10
    assert lock.refused("alice") is True
    assert lock.locked("alice") == 300 and lock.locked("bob") == 0  # only alice
    assert lock.health() == {"max_refusals": 3, "locked_out": 1}
    clock.t += 299
    assert lock.locked("alice") == 1
    clock.t += 1
    assert lock.locked("alice") == 0 and lock.health()["locked_out"] == 0
    # the count starts again after a lockout: one refusal does not lock again
    assert lock.refused("alice") is False and lock.locked("alice") == 0


def test_refusals_older_than_the_window_and_an_admission_start_the_count_again():
    clock = _Clock()
    lock = ClaimLockout(2, window_s=60, lockout_s=30, clock=clock)
    lock.refused("alice")
    clock.t += 61
    assert lock.refused("alice") is False  # the first is out of the window
    lock.admitted("alice")
    assert lock.refused("alice") is False  # an admitted claim cleared the count
    assert lock.refused("alice") is True
    off = ClaimLockout(0, window_s=60, lockout_s=30, clock=clock)
    assert not off.enabled and not any(off.refused("alice") for _ in range(100)) and off.locked("alice") == 0


def test_the_persons_followed_are_bounded():
    lock = ClaimLockout(2, window_s=60, lockout_s=30, clock=_Clock())
    for i in range(MAX_PERSONS + 50):
        lock.refused(f"p{i}")
    assert len(lock._refusals) == MAX_PERSONS
    assert lock.refused("p0") is False  # the oldest were forgotten first
    assert lock.refused(f"p{MAX_PERSONS + 49}") is True


def test_refusals_at_the_sites_other_doors_add_up_with_this_doors():
    """The attack: a stolen badge tried at door after door, max_refusals - 1 times at each.
    Without the other doors' refusals (the hub's, at each sync) the third refusal here would be
    this door's first and lock nothing."""
    clock, wall = _Clock(), _Clock()
    wall.t = 1_800_000_000.0
    lock = ClaimLockout(3, window_s=600, lockout_s=300, clock=clock, wall=wall)
    assert lock.remote_since() == wall.t - 600
    lock.other_doors([("alice", wall.t - 100), ("alice", wall.t - 50), ("bob", wall.t - 10)])
    assert lock.locked("alice") == 0 and lock.health()["locked_out"] == 0  # two are not three
    assert lock.refused("alice") is True and lock.locked("alice") == 300  # the third, here
    assert lock.refused("bob") is False  # bob's one and this one
    alone = ClaimLockout(3, window_s=600, lockout_s=300, clock=clock, wall=wall)
    assert alone.refused("alice") is False  # a door on its own: the first of three


def test_the_other_doors_refusals_alone_lock_until_lockout_s_after_the_last_and_only_once():
    clock, wall = _Clock(), _Clock()
    wall.t = 1_800_000_000.0
    lock = ClaimLockout(3, window_s=600, lockout_s=300, clock=clock, wall=wall)
    refusals = [("alice", wall.t - 100), ("alice", wall.t - 50), ("alice", wall.t - 20),
                ("carol", wall.t - 700), ("carol", wall.t - 650), ("carol", wall.t - 5)]  # two out of the window
    lock.other_doors(refusals)
    assert lock.locked("alice") == 280 and lock.locked("carol") == 0
    lock.other_doors(refusals)  # the next sync brings them again: nothing stretched
    assert lock.locked("alice") == 280
    clock.t += 281
    wall.t += 281
    lock.other_doors(refusals)  # still in the window, but they were spent on the lockout
    assert lock.locked("alice") == 0
    assert lock.refused("alice") is False  # the count starts again after a lockout, as here
    # another edge's clock ahead of this one's: its refusals count as now, never longer
    lock.other_doors([("dave", wall.t + 3600)] * 3)
    assert lock.locked("dave") == 300


def test_an_admission_here_ends_the_other_doors_count_and_off_ignores_them():
    clock, wall = _Clock(), _Clock()
    wall.t = 1_800_000_000.0
    lock = ClaimLockout(3, window_s=600, lockout_s=300, clock=clock, wall=wall)
    before = [("alice", wall.t - 100), ("alice", wall.t - 50)]
    lock.other_doors(before)
    clock.t += 1
    wall.t += 1
    lock.admitted("alice")  # alice herself, on her own badge
    lock.other_doors(before)  # the hub has not heard of the admission yet
    assert lock.refused("alice") is False and lock.refused("alice") is False  # the count started again
    assert lock.refused("alice") is True
    off = ClaimLockout(0, window_s=600, lockout_s=300, clock=clock, wall=wall)
    off.other_doors([("bob", wall.t)] * 10)
    assert off.remote_since() is None and off.locked("bob") == 0


def test_a_lockout_from_the_other_doors_survives_a_restart(tmp_path):
    clock, wall = _Clock(), _Clock()
    wall.t = 1_800_000_000.0
    lock = ClaimLockout(2, window_s=600, lockout_s=300, clock=clock, store=LockoutStore(tmp_path / "l.db"), wall=wall)
    lock.other_doors([("alice", wall.t - 30), ("alice", wall.t - 10)])
    assert lock.locked("alice") == 290
    lock.close()
    wall.t += 60
    again = _restarted(tmp_path / "l.db", clock, wall, max_refusals=2)
    assert again.locked("alice") == 230


def test_a_lift_on_the_hub_ends_the_lockout_it_followed_and_only_that_one(tmp_path):
    clock, wall = _Clock(), _Clock()
    wall.t = 1_800_000_000.0
    lock = ClaimLockout(2, window_s=600, lockout_s=300, clock=clock, store=LockoutStore(tmp_path / "l.db"), wall=wall)
    assert lock.remote_since() == wall.t - 600
    lock.refused("alice")
    assert lock.refused("alice") is True and lock.locked("alice") == 300
    clock.t += 10
    wall.t += 10
    lock.other_doors([], [("alice", wall.t - 5)])  # lifted 5 s ago, after the lockout began
    assert lock.locked("alice") == 0
    assert lock.refused("alice") is False  # the count started again at the lift
    assert lock.refused("alice") is True  # a new lockout
    lock.other_doors([], [("alice", wall.t - 5)])  # the same lift again (each sync sends it): nothing
    assert lock.locked("alice") == 300
    lock.close()
    again = _restarted(tmp_path / "l.db", clock, wall, max_refusals=2)  # the new lockout is on disk,
    again.other_doors([], [("alice", wall.t - 5)])  # the lift that came before it does not end it
    assert again.locked("alice") == 300
    off = ClaimLockout(0, window_s=600, lockout_s=300, clock=clock, wall=wall)
    assert off.remote_since() is None


def _restarted(path, clock: _Clock, wall: _Clock, max_refusals: int = 3) -> ClaimLockout:
    """A new process: a new monotonic clock origin, the same file."""
    clock.t = 5.0
    return ClaimLockout(max_refusals, window_s=60, lockout_s=300, clock=clock, store=LockoutStore(path), wall=wall)


def test_a_restart_gives_a_stolen_badge_no_new_tries(tmp_path):
    """The attack: two refusals, cut the door's power, two more, again... Without the counts on
    disk every boot starts from zero and the badge gets max_refusals - 1 tries per restart."""
    path, clock, wall = tmp_path / "lockout.db", _Clock(), _Clock()
    wall.t = 1_700_000_000.0
    lock = ClaimLockout(3, window_s=60, lockout_s=300, clock=clock, store=LockoutStore(path), wall=wall)
    assert [lock.refused("alice"), lock.refused("alice")] == [False, False]
    lock.refused("bob")
    lock.close()
    wall.t += 20  # the restart took 20 s
    lock = _restarted(path, clock, wall)
    assert lock.refused("alice") is True  # the third within the window, across the restart
    assert lock.refused("bob") is False and lock.locked("bob") == 0
    lock.close()
    wall.t += 100
    lock = _restarted(path, clock, wall)
    assert lock.locked("alice") == 200  # the lockout goes on where it was
    assert lock.health() == {"max_refusals": 3, "locked_out": 1}
    assert lock.refused("bob") is False  # bob's one refusal is 120 s old: out of the window
    lock.admitted("bob")
    lock.close()
    wall.t += 200
    lock = _restarted(path, clock, wall)
    assert lock.locked("alice") == 0 and lock.refused("bob") is False  # ended; bob's count cleared
    lock.close()


def test_a_clock_set_back_never_stretches_a_saved_lockout_and_off_forgets_it(tmp_path):
    """A Pi without a clock boots at the last saved time and NTP moves it later: a saved time
    in the future counts as now, a lockout never runs longer than lockout_s after the restart."""
    path, clock, wall = tmp_path / "lockout.db", _Clock(), _Clock()
    wall.t = 1_700_000_000.0
    lock = ClaimLockout(2, window_s=60, lockout_s=300, clock=clock, store=LockoutStore(path), wall=wall)
    lock.refused("carol")
    assert lock.refused("alice") is False and lock.refused("alice") is True
    lock.close()
    wall.t -= 10_000  # booted with the clock far behind
    lock = _restarted(path, clock, wall, max_refusals=2)
    assert lock.locked("alice") == 300
    assert lock.refused("carol") is True  # carol's saved refusal counts as just now
    lock.close()
    off = _restarted(path, clock, wall, max_refusals=0)
    assert off.locked("alice") == 0 and off.health()["locked_out"] == 0
    off.close()
    assert _restarted(path, clock, wall, max_refusals=2).locked("alice") == 0  # dropped from disk


def test_a_lockout_that_cannot_be_saved_still_holds_in_memory(tmp_path):
    path, clock, wall = tmp_path / "lockout.db", _Clock(), _Clock()
    store = LockoutStore(path)
    lock = ClaimLockout(2, window_s=60, lockout_s=300, clock=clock, store=store, wall=wall)
    store._db.execute("DROP TABLE refusal")  # every write now fails, as on a broken disk
    assert lock.refused("alice") is False and lock.refused("alice") is True
    assert lock.locked("alice") == 300
    lock.close()



def test_a_damaged_lockout_file_is_set_aside_and_counting_starts_afresh(tmp_path, caplog):
    """Only counts live in it: the door must start, not stop on a traceback (other data files
    stop the daemon with a clear error: test_security_disk)."""
    path = tmp_path / "lockout.db"
    path.write_bytes(b"\x00not sqlite\xff" * 400)
    with caplog.at_level("ERROR", logger="edge.daemon"):
        lock = ClaimLockout(2, window_s=60, lockout_s=300, clock=_Clock(), store=LockoutStore(path), wall=_Clock())
    aside = [p.name for p in tmp_path.iterdir() if p.name.startswith("lockout.db.damaged-")]
    assert len(aside) == 1 and (tmp_path / aside[0]).read_bytes().startswith(b"\x00not sqlite")
    assert "file is not a database" in caplog.text and aside[0] in caplog.text
    assert lock.refused("alice") is False and lock.refused("alice") is True
    lock.close()
    reopened = _restarted(path, _Clock(), _Clock(), max_refusals=2)
    assert reopened.locked("alice") > 0  # the fresh file keeps what follows
    reopened.close()

def _out(decision: Decision, source: Source = Source.LOCAL) -> Outcome:
    return Outcome(Mode.VERIFY, decision, source, "alice")


def test_claims_count_refusals_on_the_face_and_refuse_a_locked_persons_claim_at_open():
    clock = _Clock()
    claims = Claims(10.0, ClaimLockout(2, window_s=60, lockout_s=30, clock=clock))
    claim = Claim("alice", time.monotonic() + 10)
    assert claims.decided(claim, _out(Decision.REJECT, Source.OFFLINE_POLICY)) is None  # a hub outage: not counted
    assert claims.decided(claim, _out(Decision.UNKNOWN)) is None  # no face in time: not counted
    assert claims.decided(claim, _out(Decision.REJECT, Source.CLOUD)) == "refused"  # what its record says
    claims.open("bob", 5, "waiting")
    assert claims.refused() == [] and claims.waiting
    claims.decided(claim, _out(Decision.REJECT))
    claims.open("alice", 5, "badge-7")
    refused = claims.refused()
    assert [(c.person_id, c.request_id) for c in refused] == [("alice", "badge-7")]
    assert claims.take() is not None and claims.take() is None  # bob's claim kept waiting, alone
    assert claims.refused() == []
    assert claims.decided(claim, _out(Decision.ACCEPT)) == "admitted"
    assert Claims(10.0, ClaimLockout(0, 60, 30)).decided(claim, _out(Decision.REJECT)) is None  # no limit: not counted


def test_a_stolen_badge_is_locked_out_after_two_refusals_in_a_real_daemon(
        mosquitto, subscribe, mqtt_sender, faces_dir, models_dir, tmp_path):
    """A real daemon, max_refusals 2: Madonna's badge shown twice with Elton John's face (two
    rejects, the daemon restarted between them), then once more after another restart: refused
    at once, reason claim_locked_out, no face scored; another member's claim is decided as ever.
    The door counts alone here (share_refusals off).
    Without the limit the third claim is decided on the face (the attack: as many chances as the
    reader sends), and without the counts on disk every restart starts them again."""
    drop = tmp_path / "drop"
    drop.mkdir()
    sub = subscribe("test/door-lock/event")

    def claim(person_id, request_id):
        payload = edge_command("verify", person_id=person_id, request_id=request_id)
        mqtt_sender.publish("test/door-lock/cmd/verify", json.dumps(payload), qos=1).wait_for_publish(5)
        time.sleep(0.5)

    def show(photo):
        shutil.copy(faces_dir / photo, drop / "face.jpg")

    def leave():
        for f in drop.iterdir():
            f.unlink()
        time.sleep(0.6)

    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub:
        port = free_port()
        cfg = write_edge_config(tmp_path / "edge.toml", device="door-lock", camera=f"files:{drop}/*",
                                broker=mosquitto, hub=hub, storage=tmp_path / "data", api_port=port, loop=True,
                                sections={"identify": {"enabled": False},
                                          "verify": {"max_refusals": 2, "lockout_s": 120, "share_refusals": False}})

        def restart(daemon=None):
            if daemon is not None:
                assert daemon.terminate() == 0
            daemon = DaemonProc(cfg, port, tmp_path / "daemon.log").start()
            daemon.wait_health(lambda h: h["sync"].get("status") == "ok" and h["mqtt"]["connected"], 60)
            return daemon

        daemon = restart()
        try:
            for i in (1, 2):
                claim("madonna", f"stolen-{i}")
                show("five_celebrity/Elton_John/val_1.jpg")
                assert sub.wait_for(lambda n=i: len(sub.json()) >= n, 30)
                leave()
                if i == 1:
                    daemon = restart(daemon)  # the power cut an attacker can cause
            health = daemon.wait_health(lambda h: h["claims"]["locked_out"] == 1, 10)
            assert health["claims"] == {"max_refusals": 2, "locked_out": 1}
            daemon = restart(daemon)
            assert daemon.health()["claims"] == {"max_refusals": 2, "locked_out": 1}
            show("five_celebrity/Madonna/val_1.jpg")  # even her own face: the badge is locked
            claim("madonna", "stolen-3")
            assert sub.wait_for(lambda: len(sub.json()) >= 3, 30)
            leave()
            claim("ben_afflek", "member")
            show("five_celebrity/Ben_Afflek/val_1.jpg")
            assert sub.wait_for(lambda: len(sub.json()) >= 4, 30)
            events = sub.json()
        finally:
            assert daemon.terminate() == 0
    for e in events:
        jsonschema.validate(e, schema("event"))
    first, second, locked, member = events[:4]
    assert [(e["decision"], e.get("reason")) for e in (first, second)] == [("reject", None)] * 2
    assert all(e["face"] is not None and e["score"] is not None for e in (first, second))
    assert (locked["decision"], locked["reason"], locked["person_id"]) == ("reject", LOCKED_OUT, "madonna")
    assert locked["claim"]["request_id"] == "stolen-3" and locked["face"] is None and locked["score"] is None
    assert (member["decision"], member["person_id"]) == ("accept", "ben_afflek")
    # the door stayed shut, and its access log says why
    from edge.door.access_log import AccessLog

    assert (tmp_path / "data" / "lockout.db").stat().st_mode & 0o077 == 0  # whose badge, for its owner only
    records = {r.get("event_id"): r for r in AccessLog(tmp_path / "data" / "access-log.db", b"read-only").records()}
    shut = records[locked["event_id"]]
    assert (shut["outcome"], shut["person_id"], shut["detail"]["why_not"]) == ("deny", "madonna", LOCKED_OUT)
    assert records[member["event_id"]]["outcome"] == "grant"
    # a door that counts alone (share_refusals off) tells the other doors nothing of its refusals
    assert "claim_lockout" not in records[first["event_id"]]["detail"]


def test_a_badge_refused_at_one_door_counts_at_the_next_in_real_daemons(
        mosquitto, subscribe, mqtt_sender, faces_dir, models_dir, tmp_path):
    """Two real daemons, doors A and B (max_refusals 2), one real hub: Madonna's badge with Elton
    John's face refused once at A; A's access log reaches the hub; B counts it at its first sync,
    and its own first refusal locks the badge: the next claim at B is refused at once. Without the
    site's count each door would give the badge two tries of its own. Then an operator lifts the
    lockout on the hub: at B's next sync (a signed cmd/sync) Madonna's own face with her badge
    opens again. Each door holds a hub key bound to it, which does all of that."""
    drop = tmp_path / "drop"
    drop.mkdir()

    def claim(device, request_id):
        payload = edge_command("verify", person_id="madonna", request_id=request_id)
        mqtt_sender.publish(f"test/{device}/cmd/verify", json.dumps(payload), qos=1).wait_for_publish(5)
        time.sleep(0.5)

    def stranger_shows_up(sub, n, photo="Elton_John/val_1.jpg"):
        shutil.copy(faces_dir / "five_celebrity" / photo, drop / "face.jpg")
        assert sub.wait_for(lambda: len(sub.json()) >= n, 30)
        for f in drop.iterdir():
            f.unlink()
        time.sleep(0.6)

    # each door syncs and uploads with a hub key bound to it, as installed (docs/security.md)
    keys = {name: bind_edge_key(tmp_path / "hub", tmp_path / name) for name in ("door-site-a", "door-site-b")}
    with hub_with_five_enrolled(tmp_path / "hub", faces_dir) as hub:
        def door(name):
            port = free_port()
            cfg = write_edge_config(tmp_path / f"{name}.toml", device=name, camera=f"files:{drop}/*",
                                    broker=mosquitto, hub=hub.key_for(keys[name]), storage=tmp_path / name,
                                    api_port=port, loop=True,
                                    sections={"identify": {"enabled": False},
                                              "verify": {"max_refusals": 2, "lockout_s": 120}})
            daemon = DaemonProc(cfg, port, tmp_path / f"{name}.log").start()
            daemon.wait_health(lambda h: h["sync"].get("status") == "ok" and h["mqtt"]["connected"], 60)
            return daemon

        sub_a, sub_b = subscribe("test/door-site-a/event"), subscribe("test/door-site-b/event")
        a = door("door-site-a")
        try:
            claim("door-site-a", "at-a")
            stranger_shows_up(sub_a, 1)
            a.wait_health(lambda h: h["door"]["access_log"]["uploaded"] == h["door"]["access_log"]["records"], 30)
        finally:
            assert a.terminate() == 0
        b = door("door-site-b")
        try:
            assert b.health()["claims"]["locked_out"] == 0  # one refusal at the site: not yet
            claim("door-site-b", "at-b")
            stranger_shows_up(sub_b, 1)
            b.wait_health(lambda h: h["claims"]["locked_out"] == 1, 10)
            claim("door-site-b", "at-b-again")
            assert sub_b.wait_for(lambda: len(sub_b.json()) >= 2, 30)
            with closing(hub.client(timeout=30.0, retries=0)) as client:
                client.liftclaims("madonna")  # the badge is back with her: an operator lifts the lockout
            sync = json.dumps(edge_command("sync"))
            mqtt_sender.publish("test/door-site-b/cmd/sync", sync, qos=1).wait_for_publish(5)
            b.wait_health(lambda h: h["claims"]["locked_out"] == 0, 30)
            claim("door-site-b", "her-own")
            stranger_shows_up(sub_b, 3, photo="Madonna/val_1.jpg")
            events = sub_b.json()
        finally:
            assert b.terminate() == 0
    assert (sub_a.json()[0]["decision"], sub_a.json()[0].get("reason")) == ("reject", None)
    refused, locked, own = events[:3]
    assert (own["decision"], own["person_id"], own["claim"]["request_id"]) == ("accept", "madonna", "her-own")
    assert (refused["decision"], refused.get("reason"), refused["person_id"]) == ("reject", None, "madonna")
    assert (locked["decision"], locked["reason"], locked["claim"]["request_id"]) == ("reject", LOCKED_OUT, "at-b-again")
    from edge.door.access_log import AccessLog

    records = {r.get("event_id"): r for r in AccessLog(tmp_path / "door-site-b" / "access-log.db", b"ro").records()}
    assert records[refused["event_id"]]["detail"]["claim_lockout"] == "refused"  # what the hub reads
    assert "claim_lockout" not in records[locked["event_id"]]["detail"]  # a lockout's refusal is no try


def test_only_an_accept_the_door_opens_for_clears_the_count_and_an_attack_counts():
    """With [liveness] mode = "flag" a print of the badge's owner held up with the badge was an
    accept (the door refused it as an attack) and cleared her count: a thief's own face four
    times, then the print, again and again, was never locked out. So did an accept the door does
    not open for (the offline policy's allow). Only an accept it opens for admits; an attack
    counts as a refusal in every mode."""
    from edge.core.domain import TrackLiveness
    from edge.daemon.door_link import strict_accept

    def why_not(out: Outcome, mode: str = "flag") -> str:  # as the daemon asks (main._why_not_admitted)
        return strict_accept(out, liveness_mode=mode, stale_s=0, decided_s=None, offline_allow_opens=False)[1]

    claims = Claims(10.0, ClaimLockout(5, window_s=600, lockout_s=300, clock=_Clock()))
    claim = Claim("alice", time.monotonic() + 10)
    print_held_up = Outcome(Mode.VERIFY, Decision.ACCEPT, Source.LOCAL, "alice",
                            liveness=TrackLiveness(0.001, 5, "attack"))
    offline_allow = Outcome(Mode.VERIFY, Decision.ACCEPT, Source.OFFLINE_POLICY, "alice",
                            liveness=TrackLiveness(0.9, 5, "live"))
    for _ in range(2):
        for _ in range(2):
            assert claims.decided(claim, _out(Decision.REJECT)) == "refused"  # the thief's own face
        assert claims.decided(claim, print_held_up, why_not=why_not(print_held_up)) == "refused"
        assert claims.decided(claim, offline_allow, why_not=why_not(offline_allow)) is None
    assert claims.lockout.locked("alice") > 0  # five refusals: locked out
    live = Outcome(Mode.VERIFY, Decision.ACCEPT, Source.LOCAL, "alice", liveness=TrackLiveness(0.9, 5, "live"))
    assert why_not(live) == "" and claims.decided(claim, live, why_not="") == "admitted"
