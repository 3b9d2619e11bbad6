"""The daemon's side of the door (edge.daemon.door_link): decisions in, door events and the
retained state out through the publisher, and a backend that raises never stops a decision."""

from __future__ import annotations

import json

import numpy as np

from edge.core.domain import Decision, Mode, Source, TrackLiveness
from edge.core.matcher import Enrolled, Gallery
from edge.daemon.config import EdgeSettings
from edge.daemon.decide import Outcome
from edge.daemon.door_link import DoorLink
from edge.daemon.publisher import NullPublisher
from tests.door.support import BrokenRelay
from tests.support.broker import schema_errors


class Recorder(NullPublisher):
    def __init__(self):
        self.events: list[tuple[str, dict]] = []
        self.retained: dict[str, dict] = {}

    def publish_event(self, event, leaf="event"):
        self.events.append((leaf, event))

    def publish_retained(self, leaf, message):
        self.retained[leaf] = message


def gallery() -> Gallery:
    e = np.ones(128, dtype=np.float32)
    return Gallery([Enrolled("ben", "1", e, ("staff",)), Enrolled("eve", "2", -e, ("visitors",))])


def link(tmp_path, **door) -> tuple[DoorLink, Recorder]:
    s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False}, identify={"groups": ["staff"]},
                     door=door)
    rec = Recorder()
    lk = DoorLink.from_settings(s, rec, gallery)
    lk.start()
    return lk, rec


def accept(person: str) -> Outcome:
    return Outcome(Mode.IDENTIFY, Decision.ACCEPT, Source.LOCAL, person, score=0.7,
                   liveness=TrackLiveness(0.9, 5, "live"))


def test_a_member_is_granted_a_visitor_denied_and_everything_goes_out_conforming(tmp_path):
    lk, rec = link(tmp_path)
    lk.decided(accept("ben"), {"event_id": "d1"}, 0.05)
    lk.decided(accept("eve"), {"event_id": "d2"}, 0.05)
    door_events = [e for leaf, e in rec.events if leaf == "door/main/event"]
    grant = next(e for e in door_events if e["kind"] == "grant")
    deny = next(e for e in door_events if e["kind"] == "deny")
    assert (grant["person_id"], grant["decision_event_id"]) == ("ben", "d1")
    assert (deny["person_id"], deny["reason"], deny["decision_event_id"]) == ("eve", "not_in_groups", "d2")
    for e in door_events:
        assert schema_errors("p/dev/door/main/event", json.dumps(e).encode()) == []
    state = rec.retained["door/main/state"]
    assert state["state"] == "unlocked"
    assert schema_errors("p/dev/door/main/state", json.dumps(state).encode()) == []
    assert lk.door.io.energised  # type: ignore[attr-defined]


def test_a_raising_backend_never_stops_the_decision_path(tmp_path):
    lk, rec = link(tmp_path)
    lk.door.io = BrokenRelay(RuntimeError("driver bug"))
    for i in range(3):
        lk.decided(accept("ben"), {"event_id": f"d{i}"}, 0.05)  # does not raise
        lk.tick()
    kinds = [e["kind"] for leaf, e in rec.events]
    assert "relay_fault" in kinds and "grant" not in kinds
    assert lk.health()["status"] == "degraded" and rec.retained["door/main/state"]["locked"]


def test_no_grant_once_the_door_is_closed(tmp_path):
    lk, rec = link(tmp_path)
    lk.close()
    lk.decided(accept("ben"), {"event_id": "late"}, 0.05)
    assert not any(e["kind"] == "grant" for leaf, e in rec.events)


def test_a_grant_passes_the_persons_synced_credentials_to_the_backend(tmp_path):
    from edge.core.credentials import Credential

    card = Credential("h10301", 12345, facility=42)
    s = EdgeSettings(storage={"path": tmp_path}, mqtt={"enabled": False}, identify={"groups": ["staff"]})
    asked: list[str] = []
    lk = DoorLink.from_settings(s, Recorder(), gallery,
                                credentials_of=lambda pid: asked.append(pid) or (card,))
    notices = []
    lk.door.io.announce_grant = notices.append  # type: ignore[method-assign]
    lk.start()
    lk.decided(accept("ben"), {"event_id": "d1"}, 0.05)
    lk.decided(accept("eve"), {"event_id": "d2"}, 0.05)  # denied: nothing announced
    assert asked == ["ben"] and [n.credentials for n in notices] == [(card,)]


def test_the_door_relocks_on_time_while_the_main_loop_is_held_up(tmp_path):
    """The relock on time ran on the main loop's turns only: a cloud fallback to a hub that
    answered slowly (each read under its timeout, no overall deadline) held the loop, and a door
    granted just before stayed unlocked past unlock_s and max_unlock_s. The door keeps its own
    time now; its events wait for the loop."""
    import threading
    import time

    lk, rec = link(tmp_path, unlock_s=0.3, max_unlock_s=1)
    stop = threading.Event()
    clock = threading.Thread(target=lk.keep_time, args=(stop,), daemon=True)
    clock.start()
    try:
        lk.decided(accept("ben"), {"event_id": "d1"}, 0.05)
        assert lk.door.io.energised  # type: ignore[attr-defined]
        deadline = time.monotonic() + 10
        while lk.door.io.energised and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.05)  # the main loop is held up: nothing but the door's clock ticks
        assert not lk.door.io.energised  # type: ignore[attr-defined]
        assert lk.door.snapshot()["state"] == "locked"
        lk.tick()  # the loop turns again: the relock goes out as the door's state
        assert rec.retained["door/main/state"]["state"] == "locked"
    finally:
        stop.set()
        clock.join(5)
    assert not clock.is_alive()


def test_a_remote_unlock_after_the_door_was_locked_for_the_stop_is_refused(tmp_path):
    """cmd/unlock arrives on the broker's thread, which runs until the very end of a stop: an
    unlock taken after the door was locked for it was never relocked by this edge nor logged."""
    lk, rec = link(tmp_path)
    assert lk.remote_unlock("ops") is True and lk.door.io.energised  # type: ignore[attr-defined]
    lk.close()
    assert not lk.door.io.energised  # type: ignore[attr-defined]
    granted = len([e for leaf, e in rec.events if leaf == "door/main/event" and e["kind"] == "grant"])
    assert lk.remote_unlock("ops") is False
    assert not lk.door.io.energised  # type: ignore[attr-defined]
    assert len([e for leaf, e in rec.events if leaf == "door/main/event" and e["kind"] == "grant"]) == granted


def test_the_doors_state_and_events_go_out_while_the_main_loop_is_held(tmp_path):
    """They went out on the main loop's turns only (tick -> flush): while the loop waited on a
    hub that had stopped answering (a cloud fallback, seconds), a door the clock thread relocked
    showed unlocked to every consumer (a home-automation lock, the retained state), and an alarm
    waited as long. The publishing thread sends them as they happen; the main loop never ticks
    here."""
    import threading

    from tests.conftest import wait_until

    lk, rec = link(tmp_path, backend="none", unlock_s=0.5)
    stop = threading.Event()
    threads = [threading.Thread(target=run, args=(stop,), daemon=True)
               for run in (lk.keep_time, lk.keep_publishing)]
    for t in threads:
        t.start()
    try:
        assert lk.remote_unlock("site/AKIDdesk")
        assert wait_until(lambda: rec.retained.get("door/main/state", {}).get("locked") is False, 1.0)
        assert wait_until(lambda: rec.retained["door/main/state"]["locked"] is True, 2.0)  # relocked, and said
        kinds = [e["kind"] for leaf, e in rec.events if leaf == "door/main/event"]
        assert "grant" in kinds and kinds.count("door_state") >= 2
        lk.decided(accept("ben"), {"event_id": "d-1"}, 0.05)
        grant = [e for _, e in rec.events if e.get("decision_event_id") == "d-1"]
        assert [e["kind"] for e in grant] == ["grant"]  # once, whichever thread took it
    finally:
        stop.set()
        for t in threads:
            t.join(5)
        lk.close()
