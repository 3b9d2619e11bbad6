"""The door link under the hub's synced access rules (edge.door.rules_in_force) and with its
access log: which rules are in force, what a broken synced document does, the scheduled door
modes, step-up, duress and anti-passback through the log. A real edge cache (SQLite) fed with
sync pages as they come off the wire, a real access log; the backend `none` stands for the relay."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from edge.core.domain import Decision, Mode, Source, TrackLiveness
from edge.daemon.cache import EdgeCache
from edge.daemon.config import EdgeSettings
from edge.daemon.decide import Outcome
from edge.daemon.door_link import DoorLink
from edge.door.access_log import AccessLog
from tests.door.test_door_link import Recorder, gallery
from tests.support.broker import schema_errors

ALL_WEEK = [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "from": "00:00", "to": "24:00"}]
RULES = {
    "format": 1, "timezone": "UTC", "groups": ["staff", "visitors"],
    "doors": [{"id": "main"}],
    "schedules": {"always": ALL_WEEK},
    "access_levels": [{"id": "staff-main", "groups": ["staff"], "doors": ["main"], "schedule": "always"}],
}
# an uncertain face may be decided by a second factor (docs/access.md#second-factor)
SECOND_FACTOR = {**RULES, "doors": [{"id": "main", "auth": [{"schedule": "always", "auth": "claim_if_uncertain"}]}]}
BROKEN = {**RULES, "access_levels": [{"id": "x", "groups": ["nobody"], "doors": ["main"], "schedule": "always"}]}


class Edge:
    """A door link wired as the daemon wires it: the cache's rules, a real access log."""

    def __init__(self, tmp_path, clock_synchronised=lambda: True, **door):
        self.cache = EdgeCache(tmp_path / "cache.db")
        self.log = AccessLog(tmp_path / "access-log.db", b"the-edge-key-for-tests-0123456789")
        self.rec = Recorder()
        s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False}, identify={"groups": ["staff"]},
                         door=door)
        self.link = DoorLink.from_settings(s, self.rec, gallery, synced_rules=self.cache.rules,
                                           rules_status=self.cache.rules_status, access_log=self.log,
                                           clock_synchronised=clock_synchronised)
        self.seq = 0

    def sync_rules(self, doc: dict, version: int) -> None:
        self.seq += 1
        self.cache.apply_page([{"seq": self.seq, "type": "rules", "version": version, "rules": json.dumps(doc)}],
                              self.seq)

    def decide(self, person: str, event_id: str, decision: Decision = Decision.ACCEPT) -> None:
        out = Outcome(Mode.IDENTIFY, decision, Source.LOCAL, person, score=0.7,
                      liveness=TrackLiveness(0.9, 5, "live"))
        self.link.decided(out, {"event_id": event_id, "fingerprints": {"pack": "pack-fp"},
                                "cache_version": "sync-3"}, 0.05)

    def door_events(self, kind: str | None = None) -> list[dict]:
        return [e for leaf, e in self.rec.events if leaf == "door/main/event" and kind in (None, e["kind"])]

    def records(self, kind: str | None = None) -> list[dict]:
        return [r for r in self.log.records(0, 1000) if kind in (None, r["kind"])]

    @property
    def energised(self) -> bool:
        return bool(self.link.door.io.energised)  # type: ignore[attr-defined]


@contextmanager
def held_elsewhere(lock, limit_s: float = 20.0) -> Iterator[threading.Event]:
    """`lock` held by another thread (a sync page, a door event's write, on a card that stalls)
    until the block ends or the event it yields is set."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            held.set()
            release.wait(limit_s)

    holder = threading.Thread(target=hold, daemon=True)
    holder.start()
    assert held.wait(5)
    try:
        yield release
    finally:
        release.set()
        holder.join(5)


@contextmanager
def door_threads(edge: Edge) -> Iterator[None]:
    """The door's clock and schedule threads, as the daemon starts them."""
    stop = threading.Event()
    threads = [threading.Thread(target=edge.link.keep_time, args=(stop,), daemon=True),
               threading.Thread(target=edge.link.keep_schedule, args=(stop,), daemon=True)]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(5)
    assert not any(t.is_alive() for t in threads)


def test_without_synced_rules_the_config_groups_decide_and_health_says_so(tmp_path):
    edge = Edge(tmp_path)
    edge.link.start()
    edge.decide("eve", "d1")
    edge.decide("ben", "d2")
    assert [(e["person_id"], e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")] \
        == [("eve", "deny", "not_in_groups"), ("ben", "grant", "granted")]
    rules = edge.link.health()["rules"]
    assert (rules["in_force"], rules["version"], rules["rules_invalid"]) == ("groups", None, False)
    assert edge.records("rules")[0]["reason"] == "groups"
    ben = edge.records("decision")[-1]
    assert (ben["person_id"], ben["outcome"], ben["event_id"], ben["score"], ben["liveness"], ben["model_version"],
            ben["gallery_version"]) == ("ben", "grant", "d2", 0.7, "live", "pack-fp", "sync-3")


def test_a_broken_synced_document_keeps_the_last_good_rules(tmp_path):
    edge = Edge(tmp_path)
    edge.sync_rules(RULES, 1)
    edge.link.start()
    edge.decide("eve", "d1")  # no access level for visitors
    edge.sync_rules(BROKEN, 2)  # refused by the cache: version 1 stays
    edge.link.tick()
    edge.decide("ben", "d2")
    decided = [(e["person_id"], e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")]
    assert decided == [("eve", "deny", "no_access_level"), ("ben", "grant", "granted")]
    assert edge.energised
    health = edge.link.health()
    assert health["rules"] == {"in_force": "synced", "version": 1, "refused": 2, "error": health["rules"]["error"],
                               "rules_invalid": False, "hub_version": None}
    # the door goes on with version 1, but a revocation in version 2 is not in force: said, not hidden
    assert "nobody" in health["rules"]["error"] and health["status"] == "degraded"
    assert [(r["reason"], r.get("rules_version"), r["detail"].get("refused")) for r in edge.records("rules")] \
        == [("synced", 1, None), ("synced", 1, 2)]
    ben = edge.records("decision")[-1]
    assert (ben["rules_version"], ben["rule"]) == (1, "level:staff-main")
    assert edge.log.verify().ok


def test_no_good_rules_and_a_broken_document_denies_rules_invalid(tmp_path):
    edge = Edge(tmp_path)
    edge.sync_rules(BROKEN, 1)  # the first document synced is broken: no good rules at all
    edge.link.start()
    edge.decide("ben", "d1")  # would pass under the config's groups: never here
    assert [(e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")] \
        == [("deny", "rules_invalid")]
    assert not edge.energised and not edge.door_events("grant")
    health = edge.link.health()
    assert health["rules"]["in_force"] == "invalid" and health["rules"]["rules_invalid"] is True
    assert health["status"] == "degraded"
    record = edge.records("decision")[-1]
    assert (record["outcome"], record["reason"]) == ("deny", "rules_invalid")
    edge.sync_rules(RULES, 2)  # a good one arrives: it decides from then on
    edge.link.tick()
    edge.decide("ben", "d2")
    assert edge.door_events("grant")[-1]["decision_event_id"] == "d2"


def test_a_resync_cut_before_the_hubs_rules_came_denies_rather_than_deciding_on_the_groups(tmp_path):
    """The cache is emptied for a new model pack or new groups and syncs from 0: the persons'
    pages come first, the rules row later. A sync cut between them (the hub out of reach, the
    rate limit, the page cap) left persons and no rules: the door decided on the config's
    groups, whatever the site's rules said (a lockdown, a schedule, a second factor). The hub
    now says its rules' version with each page; until the cache has it, every request is denied."""
    edge = Edge(tmp_path)
    edge.cache.apply_page([], 40, hub_rules=3)  # a page of persons; the hub's rules are version 3
    edge.link.start()
    edge.decide("ben", "d1")  # staff: the config's groups would grant him
    assert [(e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")] \
        == [("deny", "rules_pending")]
    assert not edge.energised
    health = edge.link.health()
    assert (health["rules"]["in_force"], health["rules"]["hub_version"], health["status"]) == ("pending", 3, "degraded")
    from jsonschema import Draft202012Validator

    from edge.schemas import schema

    # as the device's state publishes it (its `door`)
    assert not list(Draft202012Validator(schema("state")["properties"]["door"]).iter_errors(health))
    assert edge.records("rules")[0]["reason"] == "pending"
    edge.sync_rules(RULES, 3)  # the rules row arrives: they decide
    edge.link.tick()
    edge.decide("ben", "d2")
    assert edge.door_events("grant")[-1]["decision_event_id"] == "d2"
    # a version this edge refused counts as seen: the last good one stays in force
    edge.cache.apply_page([{"seq": 41, "type": "rules", "version": 4, "rules": json.dumps(BROKEN)}], 41, hub_rules=4)
    edge.link.tick()
    assert edge.link.health()["rules"]["in_force"] == "synced"
    # emptied again: what the hub has is remembered, so nothing is decided before it comes back
    edge.cache.reset("another-pack", "staff")
    edge.link.tick()
    edge.decide("ben", "d3")
    assert [e["reason"] for e in edge.door_events("deny")][-1] == "rules_pending"


def test_the_schedule_sets_the_door_mode_on_ticks_never_at_start(tmp_path):
    edge = Edge(tmp_path)
    edge.sync_rules({**RULES, "doors": [{"id": "main", "modes": [{"schedule": "always", "mode": "unlocked"}]}]}, 1)
    edge.link.start()
    assert not edge.energised and edge.link.door.mode == "normal"  # starting never unlocks
    edge.link.tick()
    assert edge.energised and edge.link.door.mode == "unlocked"
    assert edge.door_events("mode")[-1]["reason"] == "schedule"
    edge.sync_rules({**RULES, "doors": [{"id": "main", "modes": [{"schedule": "always", "mode": "locked_down"}]}]}, 2)
    edge.link.tick()
    assert not edge.energised and edge.link.door.mode == "locked_down"
    edge.decide("ben", "d1")
    assert edge.door_events()[-1]["reason"] == "locked_down" and not edge.energised
    for e in edge.door_events():
        assert schema_errors("p/dev/door/main/event", json.dumps(e).encode()) == []


def test_a_schedules_end_locks_the_door_while_the_main_loop_is_held_up(tmp_path):
    """The schedule was applied on the main loop's turns only: a loop held by a slow cloud
    fallback kept an unlocked window's door unlocked past its end. The door's own clock applies
    it too (once a second, on a thread of its own: keep_schedule)."""
    import threading
    import time

    edge = Edge(tmp_path)
    edge.sync_rules({**RULES, "doors": [{"id": "main", "modes": [{"schedule": "always", "mode": "unlocked"}]}]}, 1)
    edge.link.start()
    edge.link.tick()
    assert edge.energised
    stop = threading.Event()
    clock = threading.Thread(target=edge.link.keep_schedule, args=(stop,), daemon=True)
    clock.start()
    try:  # the window ends (the rules change) while nothing but the door's threads run
        edge.sync_rules({**RULES, "doors": [{"id": "main"}]}, 2)
        deadline = time.monotonic() + 10
        while edge.energised and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not edge.energised and edge.link.door.mode == "normal"
    finally:
        stop.set()
        clock.join(5)


UNLOCKED_ALWAYS = {**RULES, "doors": [{"id": "main", "modes": [{"schedule": "always", "mode": "unlocked"}]}]}


def test_an_unlocked_window_waits_for_a_synchronised_clock(tmp_path):
    """A Pi has no real-time clock: booted on the time it was shut down at (or on a clock set by
    hand) inside an unlocked window, the door stood open to anyone before NTP set the time. The
    window is taken only once the clock is synchronised; faces still decide meanwhile."""
    synced = [False]
    edge = Edge(tmp_path, clock_synchronised=lambda: synced[0])
    edge.sync_rules(UNLOCKED_ALWAYS, 1)
    edge.link.start()
    edge.link.tick()
    assert not edge.energised and edge.link.door.mode == "normal"
    health = edge.link.health()
    assert health["schedule"] == {"clock_check": "kernel", "held": "unlocked", "why": "clock_unsynchronised"}
    assert health["status"] == "degraded"
    edge.decide("ben", "d1")  # staff: granted as in normal mode, and locked again after unlock_s
    assert edge.door_events("grant")[-1]["unlock_s"] == 3.0
    synced[0] = True
    edge.link.tick()
    assert edge.energised and edge.link.door.mode == "unlocked"
    assert edge.door_events("mode")[-1]["reason"] == "schedule"
    assert edge.link.health()["schedule"] == {"clock_check": "kernel", "held": None, "why": None}
    assert edge.link.health()["status"] == "ok"


def test_while_an_unlocked_window_is_held_the_rules_are_normal_modes_too(tmp_path):
    """The lock stayed in normal mode, but the rules still read the window as unlocked and
    granted any accepted face before looking at levels, second factors or anti-passback."""
    edge = Edge(tmp_path, clock_synchronised=lambda: False)
    edge.sync_rules({**UNLOCKED_ALWAYS, "doors": [{"id": "main", "modes": [{"schedule": "always", "mode": "unlocked"}],
                                                   "auth": [{"schedule": "always", "auth": "face+claim"}]}]}, 1)
    edge.link.start()
    edge.link.tick()
    edge.decide("eve", "d1")  # a visitor: no access level here
    edge.decide("ben", "d2")  # staff, but no badge shown
    assert [(e["person_id"], e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")] \
        == [("eve", "deny", "no_access_level"), ("ben", "deny", "second_factor_needed")]
    assert not edge.energised


def test_a_door_unlocked_on_schedule_locks_when_its_clock_loses_synchronisation(tmp_path):
    """The kernel marks the clock unsynchronised again once its error passes 16 s without the NTP
    client (hours offline, or the time set by hand): the open window closes until it is back."""
    synced = [True]
    edge = Edge(tmp_path, clock_synchronised=lambda: synced[0])
    edge.sync_rules(UNLOCKED_ALWAYS, 1)
    edge.link.start()
    edge.link.tick()
    assert edge.energised
    synced[0] = False
    edge.link.tick()
    assert not edge.energised and edge.link.door.mode == "normal"
    mode = edge.door_events("mode")[-1]
    assert (mode["mode"], mode["reason"]) == ("normal", "clock_unsynchronised")
    for e in edge.door_events():
        assert schema_errors("p/dev/door/main/event", json.dumps(e).encode()) == []


def test_a_locked_down_window_is_taken_on_any_clock(tmp_path):
    edge = Edge(tmp_path, clock_synchronised=lambda: False)
    edge.sync_rules({**RULES, "doors": [{"id": "main", "modes": [{"schedule": "always", "mode": "locked_down"}]}]},
                    1)
    edge.link.start()
    edge.link.tick()
    assert edge.link.door.mode == "locked_down"
    assert edge.link.health()["schedule"]["held"] is None


def test_the_clock_check_follows_the_config(tmp_path):
    from edge.door.clock_sync import kernel_clock_synchronised

    s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False})
    assert s.door.clock_check == "kernel"  # the default: the kernel's word, never the bare wall clock
    assert DoorLink.from_settings(s, Recorder(), gallery).clock_synchronised is kernel_clock_synchronised
    off = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False}, door={"clock_check": "off"})
    assert DoorLink.from_settings(off, Recorder(), gallery).clock_synchronised() is True


def test_an_operators_lockdown_in_the_config_is_not_lifted_by_a_schedule(tmp_path):
    edge = Edge(tmp_path, mode="locked_down")
    edge.sync_rules({**RULES, "doors": [{"id": "main", "modes": [{"schedule": "always", "mode": "unlocked"}]}]}, 1)
    edge.link.start()
    edge.link.tick()
    assert edge.link.door.mode == "locked_down" and not edge.energised


def test_step_up_asks_for_a_second_factor_and_opens_nothing(tmp_path):
    edge = Edge(tmp_path)
    edge.sync_rules(SECOND_FACTOR, 1)
    edge.link.start()
    edge.decide("ben", "d1", Decision.UNCERTAIN)
    assert [(e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")] \
        == [("deny", "second_factor_needed")]
    assert not edge.energised
    record = edge.records("decision")[-1]
    assert (record["outcome"], record["reason"], record["decision"]) == ("step_up", "second_factor_needed", "uncertain")


def test_duress_grants_and_raises_an_alarm_event_and_record(tmp_path):
    edge = Edge(tmp_path)
    edge.sync_rules({**RULES, "duress_persons": ["ben"]}, 1)
    edge.link.start()
    edge.decide("ben", "d1")
    grant, alarm = edge.door_events("grant")[-1], edge.door_events("alarm")[-1]
    assert (grant["reason"], alarm["reason"], alarm["decision_event_id"]) == ("duress", "duress", "d1")
    assert edge.energised
    assert schema_errors("p/dev/door/main/event", json.dumps(alarm).encode()) == []
    assert edge.records("decision")[-1]["alarm"] is True
    assert [(r["reason"], r["event_id"]) for r in edge.records("alarm")] == [("duress", "d1")]


def test_the_log_is_the_anti_passback_history(tmp_path):
    edge = Edge(tmp_path)
    edge.sync_rules({**RULES, "anti_passback": {"timed_s": 300, "response": "hard"}}, 1)
    door_clock = [1000.0]
    edge.link.door.clock = lambda: door_clock[0]
    edge.link.start()
    edge.decide("ben", "d1")
    door_clock[0] += 60  # the door relocked long ago: only the rules can refuse him now
    edge.link.tick()
    edge.decide("ben", "d2")
    assert [(e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")] \
        == [("grant", "granted"), ("deny", "anti_passback")]
    assert [r["outcome"] for r in edge.records("decision")] == ["grant", "deny"]


def test_a_log_that_cannot_be_written_is_said_once_counted_and_recorded_when_it_can(tmp_path, caplog, monkeypatch):
    import sqlite3

    edge = Edge(tmp_path)
    edge.link.start()
    append = edge.log.append

    def full_disk(kind, **fields):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(edge.log, "append", full_disk)
    edge.decide("ben", "d1")
    edge.link.tick()
    assert edge.door_events("grant")  # the door still acts; the event still goes out
    health = edge.link.health()
    assert health["status"] == "degraded" and health["access_log"]["writable"] is False
    lost = health["access_log"]["lost"]
    assert lost >= 2 and caplog.text.count("cannot be written") == 1
    monkeypatch.setattr(edge.log, "append", append)
    edge.link._log_retry_at = 0.0  # the next tick probes (every 5 s on the monotonic clock)
    edge.link.tick()
    assert edge.link.health()["access_log"]["writable"] is True and edge.link.health()["status"] == "ok"
    assert edge.records("door")[-1]["reason"] == "access_log_lost"
    assert edge.records("door")[-1]["detail"]["lost"] >= lost


def test_an_uncertain_face_refused_before_matching_is_not_asked_for_a_second_factor(tmp_path):
    from edge.core.domain import Claim

    edge = Edge(tmp_path)
    edge.sync_rules(SECOND_FACTOR, 1)
    edge.link.start()
    out = Outcome(Mode.IDENTIFY, Decision.UNCERTAIN, Source.LOCAL, "ben", score=0.5,
                  liveness=TrackLiveness(0.1, 5, "attack"), reason="presentation_attack")
    edge.link.decided(out, {"event_id": "d1"}, 0.05)
    edge.link.decided(out, {"event_id": "d2"}, 0.05, claim=Claim("ben", 0.0))  # nor opened by one
    assert [(e["kind"], e["reason"]) for e in edge.door_events() if e["kind"] in ("grant", "deny")] \
        == [("deny", "not_accepted:presentation_attack")] * 2
    record = edge.records("decision")[-1]
    assert (record["decision"], record["outcome"], record["detail"]["why_not"]) == (
        "uncertain", "deny", "presentation_attack")


def test_the_door_relocks_on_time_while_a_sync_holds_the_cache(tmp_path):
    """The door's clock read the schedule from the local cache every tenth turn, and a sync
    holds the cache for a whole page (up to 1,000 changes and an fsync: seconds on an SD card
    that stalls): a door granted meanwhile stayed unlocked past unlock_s and max_unlock_s, until
    the page was in. The door's clock now only ticks the controller; the schedule has a thread
    of its own."""
    import time

    edge = Edge(tmp_path, unlock_s=0.3, max_unlock_s=1)
    edge.sync_rules(RULES, 1)
    edge.link.start()
    with door_threads(edge), held_elsewhere(edge.cache._lock):  # a sync page on a slow card
        edge.link.door.grant("ben", "granted")  # as a decision grants: the controller, no cache read
        assert edge.energised
        granted = time.monotonic()
        while edge.energised and time.monotonic() - granted < 5:
            time.sleep(0.05)
        assert not edge.energised and time.monotonic() - granted < 1.5  # unlock_s 0.3, max_unlock_s 1


LOCKED_DOWN_ALWAYS = {**RULES, "doors": [{"id": "main", "modes": [{"schedule": "always", "mode": "locked_down"}]}]}


def test_a_scheduled_lockdown_holds_while_newer_rules_are_pending_or_none_is_left(tmp_path):
    """Rules pending (the hub announced a version the sync has not brought: a sync cut between
    pages, a cache emptied for a new model pack) or none valid left: no rules were in force, and
    the door went back to the config's mode, normal. Faces were still denied, but the lockdown
    no longer held the exit button, the signed remote unlock or the panel's output. A lockdown
    holds until rules in force say otherwise; nothing unlocks meanwhile."""
    edge = Edge(tmp_path, remote_unlock=True)
    edge.sync_rules(LOCKED_DOWN_ALWAYS, 1)
    edge.link.start()
    edge.link.tick()
    assert edge.link.door.mode == "locked_down"
    edge.seq += 1
    edge.cache.apply_page([], edge.seq, hub_rules=3)  # the hub has version 3: pending
    edge.link.tick()
    assert edge.link.health()["rules"]["in_force"] == "pending"
    assert edge.link.door.mode == "locked_down"
    assert edge.link.remote_unlock("ops") is False and not edge.energised
    edge.cache.reset("another-embedder", "staff")  # emptied for a new model pack: the kept rules go too
    edge.link.tick()
    assert edge.link.door.mode == "locked_down" and not edge.energised
    edge.sync_rules({**RULES, "doors": [{"id": "main"}]}, 3)  # the rules in force say normal
    edge.link.tick()
    assert edge.link.door.mode == "normal"


def test_while_rules_are_pending_an_unlocked_window_is_not_taken(tmp_path):
    edge = Edge(tmp_path)
    edge.sync_rules(UNLOCKED_ALWAYS, 1)
    edge.link.start()
    edge.link.tick()
    assert edge.energised
    edge.seq += 1
    edge.cache.apply_page([], edge.seq, hub_rules=3)
    edge.link.tick()
    assert edge.link.door.mode == "normal" and not edge.energised


def test_a_face_that_went_stale_while_the_rules_were_read_opens_nothing(tmp_path):
    """Staleness ([policy] stale_accept_s) was judged when the decision reached the door, before
    the waits that follow: the rules' look-up and the door-publish thread's turn (writing a door
    event to the log on a card that stalls): the relay opened for a face seen that long ago (its
    owner gone on, whoever stood there then walked in). It is judged again when the relay would
    open: denied, stale."""
    edge = Edge(tmp_path)
    edge.link.s.policy.stale_accept_s = 0.5
    edge.sync_rules(RULES, 1)
    edge.link.start()
    with held_elsewhere(edge.link._publishing) as written:  # a door event's write on a slow card
        threading.Timer(1.0, written.set).start()  # ends a second later
        edge.decide("ben", "d1")  # decided 0.05 s after its frame: fresh when it reached the door
    assert not edge.energised and not edge.door_events("grant")
    assert [(e["kind"], e["reason"]) for e in edge.door_events("deny")] == [("deny", "not_accepted:stale")]
    assert edge.records("decision")[-1]["outcome"] == "deny"
    edge.decide("ben", "d2")  # nothing in the way: granted
    assert edge.energised and edge.door_events("grant")


def test_an_unlocked_window_ends_on_time_while_a_sync_page_holds_the_cache(tmp_path, monkeypatch):
    """The schedule's own thread read the rules' status under the cache's lock, which a sync page
    holds for as long as an SD card stalls: a window unlocked on schedule stayed unlocked past
    its end until the page was in. The status last read (the committed one, which the page has
    not changed yet) answers after STATUS_WAIT_S."""
    import datetime as dt
    import time

    import edge.daemon.door_link as door_link

    wall = [dt.datetime(2026, 12, 7, 10, 0, 30, tzinfo=dt.timezone.utc).timestamp()]  # a Monday, in 10:00-10:01

    class Clock:  # the door link's `time`, its wall clock set here
        def __getattr__(self, name):
            return getattr(time, name)

        def time(self) -> float:
            return wall[0]

    monkeypatch.setattr(door_link, "time", Clock())
    window = {**RULES, "doors": [{"id": "main", "modes": [{"schedule": "window", "mode": "unlocked"}]}],
              "schedules": {**RULES["schedules"], "window": [{"days": ["mon"], "from": "10:00", "to": "10:01"}]}}
    edge = Edge(tmp_path)
    edge.sync_rules(window, 1)
    edge.link.start()
    edge.link.tick()
    assert edge.energised and edge.link.door.mode == "unlocked"
    with door_threads(edge), held_elsewhere(edge.cache._lock):  # a sync page on a slow card
        wall[0] += 60  # 10:01:30: the window is over
        ended = time.monotonic()
        while edge.energised and time.monotonic() - ended < 10:
            time.sleep(0.05)
        assert not edge.energised and edge.link.door.mode == "normal"
        assert time.monotonic() - ended < 3  # the schedule's thread turns once a second


def test_the_offline_policys_uncertain_never_opens_with_a_claim_even_where_its_allow_may(tmp_path):
    """`[door] open_on_offline_allow` lets the offline policy's `allow` open the door; it also
    made the policy's `uncertain` a candidate for a second factor: with the hub cut off, a
    look-alike with a stolen badge passed a `claim_if_uncertain` door. The offline policy's
    decisions never reach the rules as uncertain (docs/access.md#second-factor)."""
    from edge.core.domain import Claim

    for allow_opens in (True, False):
        edge = Edge(tmp_path / str(allow_opens), open_on_offline_allow=allow_opens)
        edge.sync_rules(SECOND_FACTOR, 1)
        edge.link.start()
        offline = Outcome(Mode.VERIFY, Decision.UNCERTAIN, Source.OFFLINE_POLICY, "ben", score=0.4,
                          liveness=TrackLiveness(0.9, 5, "live"))
        edge.link.decided(offline, {"event_id": "d1"}, 0.05, claim=Claim("ben", 0.0))
        assert not edge.energised and not edge.door_events("grant")
        assert edge.records("decision")[-1]["outcome"] == "deny"


def test_with_the_panel_driving_the_relay_an_unlocked_window_moves_nothing(tmp_path):
    """OSDP relay = "panel" makes the panel the relay's authority (grants become card reads,
    remote unlocks are refused), but a scheduled unlocked window drove the relay itself, and a
    panel link lost meanwhile did not lock it. The window is held: the door stays normal (faces
    still decide, their grants the panel's card reads), the panel keeps its own schedules."""
    from edge.door.backends.none import NoHardware
    from edge.door.controller import DoorController, DoorMode

    class PanelRelay(NoHardware):
        relay_by_panel = True

        def announce_grant(self, notice):
            return True

    edge = Edge(tmp_path)
    io = PanelRelay()
    edge.link.door = DoorController(io, door="main")
    edge.sync_rules(UNLOCKED_ALWAYS, 1)
    edge.link.start()
    edge.link.tick()
    assert edge.link.door.mode is DoorMode.NORMAL and not io.energised
    schedule = edge.link.health()["schedule"]
    assert (schedule["held"], schedule["why"]) == ("unlocked", "relay_by_panel")
    assert edge.link.health()["status"] != "degraded"


def test_a_lockdown_synced_just_before_a_stalled_page_is_in_force_during_it(tmp_path):
    """The status read while a page held the cache was the one last read, not the one committed:
    a lockdown synced in one page, and the next page stalling before anyone read the status, left
    the door unlocked by schedule (and granting) until that page was in. Every write that changes
    the status keeps it, as committed."""
    edge = Edge(tmp_path)
    edge.sync_rules(UNLOCKED_ALWAYS, 1)
    edge.link.start()
    edge.link.tick()
    assert edge.link.door.mode == "unlocked"
    edge.sync_rules(LOCKED_DOWN_ALWAYS, 2)  # committed; nobody read the status since
    with held_elsewhere(edge.cache._lock):  # the next page, on a slow card
        edge.link.tick()
        assert edge.link.door.mode == "locked_down" and not edge.energised
        assert edge.link.rules.status()["version"] == 2
